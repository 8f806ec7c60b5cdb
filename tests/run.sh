#!/usr/bin/env bash
# The whole test suite. Installs what the tests need when it is missing (fresh Debian
# machine): Python 3 with pip, python-socketio and websocket-client, redis-server; then builds every
# binary (end-to-end tests start them as processes) and runs all tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "please install: $*" >&2
    return 1
  fi
}

command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
if ! python3 -c 'import socketio, websocket' >/dev/null 2>&1; then
  python3 -m pip install --quiet "python-socketio[client]>=5" websocket-client \
    || python3 -m pip install --quiet --break-system-packages "python-socketio[client]>=5" websocket-client
fi

cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
