#!/usr/bin/env bash
# Bazel's --workspace_status_command (see .bazelrc): the version and commit
# stamped into the binaries (//common:build_info). Without a git checkout
# (the Docker build copies the tree without .git) the commit comes from
# PARLEY_COMMIT, else it is "unknown".
cd "$(dirname "$0")/.."
echo "STABLE_PARLEY_VERSION $(tr -d ' \n' < VERSION)"
commit=${PARLEY_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
if [ "$commit" != unknown ] && [ -z "${PARLEY_COMMIT:-}" ] &&
   [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi
echo "STABLE_PARLEY_COMMIT $commit"
