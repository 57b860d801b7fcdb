#!/bin/sh
# PostgreSQL for the scaled-out deployment: creates the cluster on first
# start (database and role "parley", password PARLEY_PG_PASSWORD, password
# authentication from the compose network), then runs the server with
# fsync and synchronous_commit on (an ack means the message is on disk).
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/parley-pg/data
if [ -z "${PARLEY_PG_PASSWORD:-}" ]; then
  echo "parley-postgres: set PARLEY_PG_PASSWORD (see deploy/README.md)" >&2
  exit 78
fi
if [ ! -s "$data/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$PARLEY_PG_PASSWORD" > "$pwfile"
  "$bin/initdb" -D "$data" -U parley --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
  "$bin/pg_ctl" -D "$data" -o "-c listen_addresses=''" -w start >/dev/null
  "$bin/psql" -U parley -d postgres -v ON_ERROR_STOP=1 -q -c 'CREATE DATABASE parley'
  "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c fsync=on \
  -c synchronous_commit=on -c max_connections=200
