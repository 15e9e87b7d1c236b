#!/bin/sh
# Installs the Debian packages tutti needs, if any is missing.
#   scripts/deps.sh build   to build and run
#   scripts/deps.sh test    to build with sanitizers and run the tests
# As root it runs apt-get; otherwise it prints the command to run.
set -eu

build="cmake ninja-build pkg-config gcc libc6-dev libuv1-dev libjansson-dev libssl-dev zlib1g-dev libhiredis-dev libopus-dev libopusenc-dev"
test="$build clang libclang-rt-14-dev nodejs npm chromium curl prometheus python3 python3-websockets redis-server redis-tools libopusfile-dev ffmpeg sox libnginx-mod-nchan"

case "${1:-build}" in
  build) want=$build ;;
  test) want=$test ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  # nodejs may come from another repository that also provides npm
  if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
  if [ "$p" = nodejs ] && command -v node >/dev/null 2>&1; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "missing packages:$missing" >&2
  echo "run: sudo apt-get install -y$missing" >&2
  exit 1
fi
