#!/usr/bin/env bash
# Runs docker-compose.yml and deploy/docker-compose.cluster.yml on a real container engine
# and checks what a user would do with them:
#   (a) the README's examples, run from the project folder with `gz run … --hub-url` and the
#       key from the hub's volume, complete (and fail) as the README says;
#   (b) a finished workflow is still listed, with its results, after `down` (without -v)
#       and `up`;
#   (c) with the cluster overlay, a 2,000-task workflow completes with every task's result
#       recorded exactly once although hub 1's container is killed mid-run.
#
# The engine: Docker when a daemon answers (`docker info`). Otherwise podman driven through
# its Docker API by docker-compose: as root, installs podman, runc, debootstrap and
# docker-compose when missing, makes a Debian bookworm base image with debootstrap (cached:
# later runs skip it), configures runc and cgroupfs, and starts `podman system service` on a
# socket of its own for this run. No registry image is pulled in that case: the suite's image
# is built FROM the local base, and the Redis image is the base with Debian's redis-server.
#
# The suite's image comes from binaries built on the host (deploy/Dockerfile.prebuilt):
# GZ_COMPOSE_BIN_DIR (default target/debug, as tests/run.sh builds them) is stripped into a
# build context. Exits 0 when every check passed; prints `compose: N passed, M failed`.
#
# Usage: deploy/test-compose.sh            (from anywhere; runs in the project folder)
# Env:   GZ_COMPOSE_BIN_DIR   folder with the binaries (default target/debug)
#        GZ_COMPOSE_TASKS     tasks in the cluster workflow (default 2000)
#        GZ_COMPOSE_MIRROR    Debian mirror for debootstrap (default: from apt's sources)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BIN_DIR=${GZ_COMPOSE_BIN_DIR:-target/debug}
BIN_DIR=$(cd "$BIN_DIR" 2>/dev/null && pwd || echo "$ROOT/$BIN_DIR")
TASKS=${GZ_COMPOSE_TASKS:-2000}
PROJECT=gz-test-$$
BASE_IMAGE=localhost/gleitzeit-base:bookworm
REDIS_IMAGE=localhost/gleitzeit-redis:bookworm
IMAGE=localhost/gleitzeit:compose-test-$$
BINARIES=(central-hub queue-manager dependency-resolver execution-engine python-provider
          ollama-provider http-provider gz)
WORK=$(mktemp -d /tmp/gz-compose.XXXXXX)
STARTED=$SECONDS

passed=0
failed=0
failures=()
ENGINE=
PODMAN_PID=
TICKER_PID=
PROJECTS=()

log() { printf '[compose %3ds] %s\n' "$((SECONDS - STARTED))" "$*"; }
pass() { passed=$((passed + 1)); log "PASS $1"; }
fail() {
  failed=$((failed + 1))
  failures+=("$1")
  log "FAIL $1"
  shift
  for line in "$@"; do printf '      %s\n' "$line"; done
}
die() {
  log "ERROR $*"
  failed=$((failed + 1))
  failures+=("$*")
  exit 1
}

# ---------------------------------------------------------------------------------------
# Clean-up, also on failure or Ctrl-C: this run's compose projects with their volumes, its
# image, the health ticker and the podman service it started.

COMPOSE=(docker-compose)
compose() {
  local project=$1
  shift
  "${COMPOSE[@]}" --ansi never -p "$project" "$@"
}

cleanup() {
  local rc=$?
  set +e
  export GLEITZEIT_REDIS_PASSWORD=${GLEITZEIT_REDIS_PASSWORD:-unused}
  for p in "${PROJECTS[@]}"; do
    compose "$p" -f docker-compose.yml -f deploy/docker-compose.cluster.yml down -v -t 5 \
      >"$WORK/down-$p.log" 2>&1 || log "could not take $p down: $(tail -1 "$WORK/down-$p.log")"
  done
  if [ -n "$ENGINE" ]; then
    "$ENGINE" rmi -f "$IMAGE" >/dev/null 2>&1
  fi
  if [ -n "$TICKER_PID" ]; then kill "$TICKER_PID" 2>/dev/null; wait "$TICKER_PID" 2>/dev/null; fi
  if [ -n "$PODMAN_PID" ]; then kill "$PODMAN_PID" 2>/dev/null; wait "$PODMAN_PID" 2>/dev/null; fi
  rm -rf "$WORK"
  log "compose: $passed passed, $failed failed ($((SECONDS - STARTED)) s)"
  for f in "${failures[@]}"; do printf '  failed: %s\n' "$f"; done
  if [ "$failed" -gt 0 ] && [ "$rc" = 0 ]; then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# The engine.

as_root_ok() { [ "$(id -u)" = 0 ]; }

install_missing() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ ${#missing[@]} = 0 ] || {
    log "installing ${missing[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$WORK/apt.log" 2>&1 \
      || die "apt-get install ${missing[*]} failed: $(tail -3 "$WORK/apt.log")"
  }
  if ! command -v docker-compose >/dev/null; then
    log "installing docker-compose"
    apt-get update -qq >/dev/null 2>&1 || true
    # Without recommends: they would bring docker.io, a second engine this script does not use.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose \
      >"$WORK/apt.log" 2>&1 || die "apt-get install docker-compose failed: $(tail -3 "$WORK/apt.log")"
  fi
}

# runc and cgroupfs (no systemd here), and no default ulimits (podman's default nofile can
# exceed what an unprivileged host allows). Written only when absent or lacking one of them;
# an existing file is kept as containers.conf.gz-backup.
configure_containers_conf() {
  local conf=/etc/containers/containers.conf
  if [ -f "$conf" ] && grep -q '^runtime *= *"runc"' "$conf" \
      && grep -q '^cgroup_manager *= *"cgroupfs"' "$conf" \
      && grep -q '^default_ulimits *= *\[\]' "$conf"; then
    return
  fi
  mkdir -p /etc/containers
  if [ -f "$conf" ]; then
    cp "$conf" "$conf.gz-backup"
    log "replacing $conf (backup: $conf.gz-backup)"
  fi
  cat >"$conf" <<'EOF'
# Written by Gleitzeit's deploy/test-compose.sh: runc with cgroupfs (no systemd on this host).
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
}

debian_mirror() {
  if [ -n "${GZ_COMPOSE_MIRROR:-}" ]; then echo "$GZ_COMPOSE_MIRROR"; return; fi
  local url
  url=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list 2>/dev/null \
    | grep -oE 'https?://[^ ]*/debian/?( |$)' | grep -v security | head -1 | tr -d ' ')
  echo "${url:-http://deb.debian.org/debian}"
}

# The base image (Debian bookworm minbase with python3 and ca-certificates) and the Redis
# image (the same plus Debian's redis-server), both imported from a debootstrap root.
make_local_images() {
  if podman image exists "$BASE_IMAGE" && podman image exists "$REDIS_IMAGE"; then
    log "local images $BASE_IMAGE and $REDIS_IMAGE exist (cached)"
    return
  fi
  local mirror rootfs=$WORK/rootfs
  mirror=$(debian_mirror)
  log "debootstrap bookworm from $mirror (first run only)"
  debootstrap --variant=minbase --include=ca-certificates,python3 bookworm "$rootfs" "$mirror" \
    >"$WORK/debootstrap.log" 2>&1 || die "debootstrap failed: $(tail -3 "$WORK/debootstrap.log")"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null 2>"$WORK/import.log" \
    || die "podman import of $BASE_IMAGE failed: $(tail -3 "$WORK/import.log")"
  log "installing redis-server into a copy for $REDIS_IMAGE"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  { chroot "$rootfs" apt-get update -qq \
      && chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends redis-server; } \
    >"$WORK/redis-apt.log" 2>&1 || die "apt-get install redis-server in the root failed: $(tail -3 "$WORK/redis-apt.log")"
  rm -f "$rootfs/usr/sbin/policy-rc.d"
  mkdir -p "$rootfs/data"
  chroot "$rootfs" chown redis:redis /data
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import - "$REDIS_IMAGE" >/dev/null 2>"$WORK/import.log" \
    || die "podman import of $REDIS_IMAGE failed: $(tail -3 "$WORK/import.log")"
  rm -rf "$rootfs"
}

start_podman_service() {
  local sock=$WORK/podman.sock
  podman system service --time=0 "unix://$sock" >"$WORK/podman-service.log" 2>&1 &
  PODMAN_PID=$!
  for _ in $(seq 100); do
    [ -S "$sock" ] && break
    sleep 0.1
  done
  [ -S "$sock" ] || die "podman system service did not open $sock: $(tail -3 "$WORK/podman-service.log")"
  export DOCKER_HOST=unix://$sock
}

# podman runs healthchecks from systemd timers; without systemd nothing runs them, so this
# run does it: every 2 s, every container of this run that has a healthcheck.
start_health_ticker() {
  (
    while sleep 2; do
      for c in $(podman ps -q --filter "name=^$PROJECT-" 2>/dev/null); do
        podman healthcheck run "$c" >/dev/null 2>&1 || true
      done
    done
  ) &
  TICKER_PID=$!
}

setup_engine() {
  if docker info >/dev/null 2>&1; then
    ENGINE=docker
    if ! command -v docker-compose >/dev/null; then
      docker compose version >/dev/null 2>&1 || die "Docker answers but neither docker-compose nor docker compose is installed"
      COMPOSE=(docker compose)
    fi
    log "engine: Docker ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
    return
  fi
  as_root_ok || die "no Docker daemon answers and podman needs root here"
  command -v apt-get >/dev/null || command -v podman >/dev/null || die "no Docker and no apt-get to install podman"
  install_missing
  configure_containers_conf
  ENGINE=podman
  make_local_images
  start_podman_service
  log "engine: podman $(podman version -f '{{.Client.Version}}' 2>/dev/null) (runc, cgroupfs) at $DOCKER_HOST"
}

build_image() {
  local ctx=$WORK/ctx base=debian:bookworm-slim
  mkdir -p "$ctx/bin"
  for b in "${BINARIES[@]}"; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing: run cargo build --workspace --bins first"
    strip -o "$ctx/bin/$b" "$BIN_DIR/$b" 2>/dev/null || cp "$BIN_DIR/$b" "$ctx/bin/$b"
  done
  [ "$ENGINE" = podman ] && base=$BASE_IMAGE
  "$ENGINE" build -q -f deploy/Dockerfile.prebuilt --build-arg "BASE_IMAGE=$base" -t "$IMAGE" "$ctx" \
    >"$WORK/build.log" 2>&1 || die "building $IMAGE failed: $(tail -5 "$WORK/build.log")"
  rm -rf "$ctx"
  log "image $IMAGE built from $BIN_DIR ($("$ENGINE" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------
# Waiting for and talking to the suite.

GZ=$BIN_DIR/gz

# Waits until every container of the project is running and healthy.
wait_healthy() {
  local project=$1 deadline=$((SECONDS + $2)) states
  shift 2
  while [ $SECONDS -lt "$deadline" ]; do
    states=$("$ENGINE" ps -a --filter "label=com.docker.compose.project=$project" \
      --format '{{.Names}} {{.Status}}' 2>/dev/null || true)
    if [ -n "$states" ] && ! grep -qv '(healthy)' <<<"$states"; then
      return 0
    fi
    sleep 2
  done
  printf '%s\n' "$states" >"$WORK/states"
  return 1
}

# The `gz --json` output of a command, or nothing.
gzj() { "$GZ" "$@" --json 2>>"$WORK/gz.err" || true; }

json_get() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# "hub-1 N, hub-2 M": the registered components per hub, as the hub at $1 lists them.
components_per_hub() {
  gzj status --hub-url "$1" | python3 -c '
import collections, json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    print("?"); sys.exit()
n = collections.Counter(c.get("hub_id") or "?" for c in d["components"])
print(", ".join("%s %d" % kv for kv in sorted(n.items())))'
}

# ---------------------------------------------------------------------------------------
# (a) and (b): the single-host suite.

check_single() {
  local p=$PROJECT-single port key out
  PROJECTS+=("$p")
  port=$(free_port)
  export GLEITZEIT_HUB_PORT=$port
  local files=(-f docker-compose.yml)
  log "up: docker-compose.yml as project $p (hub on 127.0.0.1:$port)"
  compose "$p" "${files[@]}" up -d >"$WORK/up.log" 2>&1 \
    || die "docker-compose up failed: $(tail -5 "$WORK/up.log")"
  if wait_healthy "$p" 120; then
    pass "every container of docker-compose.yml is running and healthy"
  else
    fail "containers not healthy within 120 s" "$(cat "$WORK/states")"
    compose "$p" "${files[@]}" logs --tail 20 >"$WORK/logs.txt" 2>&1 || true
    tail -40 "$WORK/logs.txt" | sed 's/^/      /'
    return
  fi

  key=$(compose "$p" "${files[@]}" exec -T central-hub cat /keys/suite.key 2>/dev/null | tr -d '\r\n')
  [ -n "$key" ] || { fail "no key in the hub's volume (/keys/suite.key)"; return; }
  export GLEITZEIT_API_KEY=$key
  local hub=http://127.0.0.1:$port

  out=$(gzj status --hub-url "$hub")
  local types
  types=$(json_get "' '.join(sorted(c['component_type'] + ':' + c['health'] for c in d['components']))" <<<"$out" 2>/dev/null || true)
  if grep -q queue-manager:healthy <<<"$types" && grep -q python-provider:healthy <<<"$types" \
      && grep -q execution-engine:healthy <<<"$types" && grep -q dependency-resolver:healthy <<<"$types" \
      && grep -q http-provider:healthy <<<"$types"; then
    pass "gz status through the published port lists the services healthy ($types)"
  else
    fail "gz status does not list the services healthy" "$types"
  fi

  # The README's examples, from the project folder.
  local hello_id
  out=$("$GZ" run examples/hello.yaml --hub-url "$hub" --json --timeout 60 2>"$WORK/run.err" || true)
  if [ "$(json_get "d['status']" <<<"$out" 2>/dev/null)" = completed ] \
      && [ "$(json_get "d['tasks'][2]['result']['result']" <<<"$out" 2>/dev/null)" = "sum is 6, label demo" ]; then
    hello_id=$(json_get "d['workflow_id']" <<<"$out")
    pass "gz run examples/hello.yaml completes: 'sum is 6, label demo' ($hello_id)"
  else
    fail "gz run examples/hello.yaml did not complete" \
      "$(json_get "'; '.join('%s %s %s' % (t['id'], t['status'], (t.get('error') or {}).get('message', '')) for t in d['tasks'])" <<<"$out" 2>/dev/null || head -c 600 <<<"$out")" \
      "$(tail -3 "$WORK/run.err")"
  fi
  out=$("$GZ" run examples/fan_out_fan_in.yaml --hub-url "$hub" --json --timeout 60 2>"$WORK/run.err" || true)
  if [ "$(json_get "d['status'] + ' ' + str(d['total_tasks'])" <<<"$out" 2>/dev/null)" = "completed 5" ]; then
    pass "gz run examples/fan_out_fan_in.yaml completes its 5 tasks"
  else
    fail "gz run examples/fan_out_fan_in.yaml did not complete" "$(head -c 600 <<<"$out")"
  fi
  out=$("$GZ" run examples/failure.yaml --hub-url "$hub" --json --timeout 60 2>"$WORK/run.err"; echo " exit=$?")
  if grep -q ' exit=1$' <<<"$out" && grep -q GZ2025 <<<"$out" && grep -q GZ3004 <<<"$out"; then
    pass "gz run examples/failure.yaml fails as documented (GZ2025, dependent skipped GZ3004, exit 1)"
  else
    fail "gz run examples/failure.yaml did not fail as documented" "$(tail -c 600 <<<"$out")"
  fi
  out=$("$GZ" run examples/retry.yaml --hub-url "$hub" --json --timeout 60 2>"$WORK/run.err" || true)
  if [ "$(json_get "d['status']" <<<"$out" 2>/dev/null)" = completed ]; then
    pass "gz run examples/retry.yaml (a file: script from the client's folder) completes"
  else
    fail "gz run examples/retry.yaml (file: scripts/flaky.py) did not complete" \
      "$(json_get "'; '.join('%s %s %s' % (t['id'], t['status'], (t.get('error') or {}).get('message', '')) for t in d['tasks'])" <<<"$out" 2>/dev/null || head -c 600 <<<"$out")"
  fi

  # (b) down (keeping volumes) and up again: the finished workflow is still there.
  log "down (volumes kept) and up again"
  compose "$p" "${files[@]}" down -t 10 >"$WORK/down.log" 2>&1 || fail "docker-compose down failed" "$(tail -3 "$WORK/down.log")"
  compose "$p" "${files[@]}" up -d >"$WORK/up.log" 2>&1 || die "docker-compose up (again) failed: $(tail -5 "$WORK/up.log")"
  if ! wait_healthy "$p" 120; then
    fail "containers not healthy within 120 s after down/up" "$(cat "$WORK/states")"
    return
  fi
  local key2
  key2=$(compose "$p" "${files[@]}" exec -T central-hub cat /keys/suite.key 2>/dev/null | tr -d '\r\n')
  if [ "$key2" = "$key" ]; then
    pass "the key survives down/up (same /keys/suite.key)"
  else
    fail "the key changed across down/up"
  fi
  if [ -n "${hello_id:-}" ]; then
    out=$(gzj list --hub-url "$hub" --limit 50)
    local listed
    listed=$(json_get "' '.join(w['status'] for w in d if w['id'] == '$hello_id')" <<<"$out" 2>/dev/null || true)
    out=$(gzj inspect workflow "$hello_id" --hub-url "$hub")
    if [ "$listed" = completed ] \
        && [ "$(json_get "[t['result']['result'] for t in d['tasks'] if t['task_id'] == 'report'][0]" <<<"$out" 2>/dev/null)" = "sum is 6, label demo" ]; then
      pass "after down/up, gz list shows $hello_id completed and gz inspect its results"
    else
      fail "after down/up, $hello_id is not listed as completed with its results" "list: '$listed'"
    fi
  else
    fail "data across down/up not checked: hello.yaml had not completed"
  fi
  compose "$p" "${files[@]}" down -v -t 5 >"$WORK/down.log" 2>&1 || true
}

# ---------------------------------------------------------------------------------------
# (c) the cluster overlay losing hub 1 mid-run.

write_big_workflow() {
  python3 - "$1" "$TASKS" <<'EOF'
import sys
path, n = sys.argv[1], int(sys.argv[2])
chain = 20
lines = ["name: compose-cluster-%d" % n, "tasks:"]
for i in range(n - chain):
    lines += ["  - id: t%05d" % i, "    method: python/execute",
              "    parameters: { code: \"import time; time.sleep(0.02); result = %d * %d\" }" % (i, i)]
for j in range(chain):
    lines += ["  - id: c%02d" % j, "    method: python/execute"]
    if j:
        lines += ["    dependencies: [c%02d]" % (j - 1),
                  "    parameters: { context: { prev: \"${c%02d.result}\" }, code: \"import time; time.sleep(0.2); result = context['prev'] + 1\" }" % (j - 1)]
    else:
        lines += ["    parameters: { code: \"import time; time.sleep(0.2); result = 0\" }"]
open(path, "w").write("\n".join(lines) + "\n")
EOF
}

check_cluster() {
  local p=$PROJECT-cluster port1 port2 key out
  PROJECTS+=("$p")
  port1=$(free_port)
  port2=$(free_port)
  export GLEITZEIT_HUB_PORT=$port1 GLEITZEIT_HUB2_PORT=$port2
  GLEITZEIT_REDIS_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
  export GLEITZEIT_REDIS_PASSWORD
  local files=(-f docker-compose.yml -f deploy/docker-compose.cluster.yml)
  log "up: cluster overlay as project $p (hubs on 127.0.0.1:$port1 and :$port2)"
  compose "$p" "${files[@]}" up -d >"$WORK/up.log" 2>&1 \
    || die "docker-compose up (cluster) failed: $(tail -5 "$WORK/up.log")"
  if wait_healthy "$p" 150; then
    pass "every container of the cluster overlay is running and healthy"
  else
    fail "cluster containers not healthy within 150 s" "$(cat "$WORK/states")"
    return
  fi
  key=$(compose "$p" "${files[@]}" exec -T central-hub cat /keys/suite.key 2>/dev/null | tr -d '\r\n')
  [ -n "$key" ] || { fail "no key in the hub's volume (/keys/suite.key)"; return; }
  export GLEITZEIT_API_KEY=$key
  local hubs=http://127.0.0.1:$port1,http://127.0.0.1:$port2 hub2=http://127.0.0.1:$port2

  if "$ENGINE" exec "$(compose "$p" "${files[@]}" ps -q redis)" redis-cli ping 2>/dev/null | grep -q NOAUTH; then
    pass "Redis refuses clients without the password"
  else
    fail "Redis answers without the password"
  fi
  log "components per hub before the loss: $(components_per_hub "$hub2")"

  local flow=$WORK/big.yaml wf
  write_big_workflow "$flow"
  out=$(gzj submit "$flow" --hub-url "$hubs")
  wf=$(json_get "d['workflow_id']" <<<"$out" 2>/dev/null || true)
  [ -n "$wf" ] || { fail "gz submit of the $TASKS-task workflow failed" "$(head -c 400 <<<"$out") $(tail -2 "$WORK/gz.err")"; return; }
  log "submitted $wf ($TASKS tasks); killing hub 1 once some have completed"
  local done_before=0 deadline=$((SECONDS + 120))
  while [ $SECONDS -lt $deadline ]; do
    done_before=$(gzj inspect workflow "$wf" --hub-url "$hub2" | json_get "d['counts']['completed']" 2>/dev/null || echo 0)
    [ "${done_before:-0}" -ge $((TASKS / 10)) ] && break
    sleep 0.2
  done
  "$ENGINE" kill "$(compose "$p" "${files[@]}" ps -q central-hub)" >/dev/null 2>&1 \
    || { fail "could not kill hub 1's container"; return; }
  log "hub 1 killed with $done_before of $TASKS tasks completed"

  local status=
  deadline=$((SECONDS + 240))
  while [ $SECONDS -lt $deadline ]; do
    out=$(gzj inspect workflow "$wf" --hub-url "$hub2")
    status=$(json_get "d['workflow']['status'] if 'workflow' in d else d.get('status')" <<<"$out" 2>/dev/null || true)
    case $status in completed | failed | cancelled) break ;; esac
    sleep 2
  done
  if [ "$done_before" -ge "$TASKS" ]; then
    fail "the workflow finished before hub 1 was killed: not a mid-run loss (raise GZ_COMPOSE_TASKS)"
  fi
  local verdict
  printf '%s' "$out" >"$WORK/big-result.json"
  verdict=$(python3 - "$TASKS" "$WORK/big-result.json" <<'EOF' 2>&1
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
d = json.load(open(path))
tasks = d.get("tasks", [])
problems = []
if len(tasks) != n:
    problems.append("%d tasks recorded, expected %d" % (len(tasks), n))
ids = [t["task_id"] for t in tasks]
if len(set(ids)) != len(ids):
    problems.append("%d task ids recorded twice" % (len(ids) - len(set(ids))))
retried = 0
for t in tasks:
    tid = t["task_id"]
    if t["status"] != "completed":
        problems.append("%s %s %s" % (tid, t["status"], (t.get("error") or {}).get("message", "")))
        continue
    value = (t.get("result") or {}).get("result")
    expected = int(tid[1:]) ** 2 if tid.startswith("t") else int(tid[1:])
    if value != expected:
        problems.append("%s result %r, expected %r" % (tid, value, expected))
    if t.get("attempts", 1) > 1:
        retried += 1
print("OK %d %d" % (len(tasks), retried) if not problems else "BAD " + "; ".join(problems[:8]))
EOF
)
  if [ "$status" = completed ] && [[ $verdict == OK* ]]; then
    set -- $verdict
    pass "cluster: $wf completed after hub 1 was killed mid-run ($done_before/$TASKS done then): all $2 tasks recorded once with the right result ($3 re-dispatched, attempts > 1)"
  else
    fail "cluster: $wf did not complete every task exactly once after hub 1 was lost" \
      "workflow status: '${status:-unknown}'" "$verdict"
  fi
  local hub1_state per_hub
  hub1_state=$("$ENGINE" inspect -f '{{.State.Status}}' "$(compose "$p" "${files[@]}" ps -q central-hub)" 2>/dev/null || echo gone)
  deadline=$((SECONDS + 30))
  while [ $SECONDS -lt $deadline ]; do
    per_hub=$(components_per_hub "$hub2")
    [ "$per_hub" = "hub-2 9" ] && break
    sleep 1
  done
  if [ "$per_hub" = "hub-2 9" ]; then
    pass "all 9 components are registered on hub 2 after hub 1's loss (hub 1's container: $hub1_state)"
  else
    fail "the components did not all move to hub 2" "components per hub: $per_hub; hub 1's container: $hub1_state"
  fi
  compose "$p" "${files[@]}" down -v -t 5 >"$WORK/down.log" 2>&1 || true
}

# ---------------------------------------------------------------------------------------

setup_engine
[ "$ENGINE" = podman ] && start_health_ticker
build_image
export GLEITZEIT_IMAGE=$IMAGE GLEITZEIT_REDIS_IMAGE=redis:7 GLEITZEIT_LOG_FORMAT=text GLEITZEIT_LOG_LEVEL=info
[ "$ENGINE" = podman ] && GLEITZEIT_REDIS_IMAGE=$REDIS_IMAGE
unset GLEITZEIT_HUB_URL GLEITZEIT_API_KEY_FILE
check_single
check_cluster
