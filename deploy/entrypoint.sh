#!/bin/sh
# Refuses to start with the example secrets from deploy/parley.env.example
# unless PARLEY_DEMO=1 says this is a demo; then runs the given binary.
set -eu
example_token_secret="example-token-secret-change-me"
example_admin_key="example-admin-key-change-me"
if [ "${PARLEY_DEMO:-0}" != "1" ]; then
  if [ "${PARLEY_TOKEN_SECRET:-}" = "$example_token_secret" ] ||
     [ "${PARLEY_ADMIN_KEY:-}" = "$example_admin_key" ]; then
    echo "parley: refusing to start with the example secrets from parley.env.example." >&2
    echo "parley: set PARLEY_TOKEN_SECRET and PARLEY_ADMIN_KEY to your own values" >&2
    echo "parley: (see deploy/README.md), or PARLEY_DEMO=1 for a throwaway demo." >&2
    exit 78
  fi
fi
# The scaled-out deployment's database password: libpq reads PGPASSWORD, so
# the --store URL need not carry it (nor show it in `ps`).
if [ -n "${PARLEY_PG_PASSWORD:-}" ]; then
  export PGPASSWORD="$PARLEY_PG_PASSWORD"
fi
exec "$@"
