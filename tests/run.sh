#!/usr/bin/env bash
# The whole test suite. Installs what the tests need when it is missing (fresh Debian
# machine): Python 3 with pip, redis-server, chromium, npm, and the Python packages (the SDK,
# python-socketio, pytest, prometheus-client, Playwright); then builds every binary
# (end-to-end tests start them as processes) and runs the Rust tests and the Python tests
# (the SDK's, the built-in functions', the dashboard's in a real browser).
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
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v npm >/dev/null 2>&1 || apt_install npm

# Python packages: python-socketio for the protocol checks, the SDK itself (sdk/python) with
# pytest for its tests and the built-in functions' tests, prometheus-client to parse
# /metrics, Playwright (driving Debian's chromium) for the dashboard's browser tests,
# kubernetes-validate (offline schemas) for the manifests in deploy/k8s, Celery with Redis
# support for `gz bench --compare-celery` (tests/bench_compare.rs).
pip_install() {
  python3 -m pip install --quiet "$@" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "$@"
}
if ! python3 -c 'import socketio, websocket, aiohttp, yaml, pytest, prometheus_client, playwright, kubernetes_validate, celery, redis' >/dev/null 2>&1; then
  pip_install "python-socketio[client,asyncio-client]>=5" websocket-client aiohttp PyYAML pytest \
    prometheus-client playwright kubernetes-validate "celery[redis]>=5,<6"
fi
pip_install --no-deps --force-reinstall ./sdk/python

cargo build --workspace --bins
# The Python tests start the binaries just built, also with a CARGO_TARGET_DIR elsewhere.
export GLEITZEIT_BIN_DIR="${GLEITZEIT_BIN_DIR:-$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug}"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
python3 -m pytest -q -p no:cacheprovider sdk/python/tests services/python-provider/tests tests/browser tests/deploy || status=$?

# --- compose test (deploy/test-compose.sh; docs/compose.md) -------------------------------
# docker-compose.yml and the cluster overlay on a real container engine (Docker, else podman
# set up by the script as root), with an image made from the debug binaries built above.
# GZ_SKIP_COMPOSE=1 skips it.
compose_skip=
if [ -n "${GZ_SKIP_COMPOSE:-}" ]; then
  compose_skip="GZ_SKIP_COMPOSE is set"
elif docker info >/dev/null 2>&1; then
  compose_skip=
elif [ "$(id -u)" != 0 ]; then
  compose_skip="no Docker daemon answers, and setting up podman needs root"
elif ! command -v apt-get >/dev/null 2>&1 && ! command -v podman >/dev/null 2>&1; then
  compose_skip="no Docker daemon answers, and neither podman nor apt-get is available"
fi
if [ -n "$compose_skip" ]; then
  echo "compose test skipped: $compose_skip"
else
  GZ_COMPOSE_BIN_DIR="${CARGO_TARGET_DIR:-target}/debug" deploy/test-compose.sh || status=1
fi
# --- end of compose test -------------------------------------------------------------------
exit "$status"
