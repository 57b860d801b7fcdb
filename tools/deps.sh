#!/usr/bin/env bash
# Installs what Parley needs from Debian's packages, idempotently: packages
# already present are not touched and nothing is printed for them.
#
#   tools/deps.sh build   compilers, Bazel, the -dev libraries
#   tools/deps.sh test    build + Python test clients
#   tools/deps.sh docker  Docker's daemon, docker-compose, debootstrap
#
# Runs apt-get as root, or through sudo when not root.
set -euo pipefail

BUILD_PACKAGES=(
  bazel-bootstrap g++ pkg-config git ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libwebsocketpp-dev libasio-dev libabsl-dev libgtest-dev libgmock-dev
  libsqlite3-dev libssl-dev rapidjson-dev libjemalloc-dev libpq-dev libnats-dev
  libcurl4-openssl-dev
)
DOCKER_PACKAGES=(
  docker.io docker-compose iptables debootstrap
)
TEST_PACKAGES=(
  python3 python3-grpcio python3-protobuf python3-websockets python3-pytest
  nats-server sqlite3 postgresql-15
  clang libclang-rt-14-dev llvm-14
)

packages=("${BUILD_PACKAGES[@]}")
case "${1:-build}" in
  build) ;;
  test) packages+=("${TEST_PACKAGES[@]}") ;;
  docker) packages=("${DOCKER_PACKAGES[@]}") ;;
  *) echo "usage: $0 build|test|docker" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  echo "parley: installing ${missing[*]}" >&2
  # Third-party apt sources that cannot be reached must not stop the install
  # from Debian's own mirror, so update failures are only reported.
  $SUDO apt-get update -qq >/dev/null 2>&1 || echo "parley: apt-get update reported errors; continuing" >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The tests check the suggested alerts (deploy/prometheus) with promtool.
# Debian ships it only inside its prometheus package, whose install would
# also set up and start a Prometheus server: take the one binary out of the
# package instead.
PROMTOOL=/usr/local/lib/parley/promtool
if [ "${1:-build}" = test ] && [ ! -x "$PROMTOOL" ]; then
  echo "parley: fetching promtool (Debian's prometheus package)" >&2
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) ||
    { $SUDO apt-get update -qq >/dev/null 2>&1 || true
      (cd "$tmp" && apt-get download prometheus >/dev/null); }
  dpkg -x "$tmp"/prometheus_*.deb "$tmp/x"
  $SUDO install -D -m 755 "$tmp/x/usr/bin/promtool" "$PROMTOOL"
  rm -rf "$tmp"
fi
