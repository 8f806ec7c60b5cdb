"""Third-party dashboards: a page on another origin, using the official `socket.io-client`
(installed from npm at test time, never part of the product), connects to the hub with a
key, joins `events` and receives `workflow_completed` of a workflow submitted meanwhile.
The hub allows that origin with --allowed-origins; the same page from an origin it does not
list is refused.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from hubclient import HubClient
from suite import Suite, wait_until

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A third-party Gleitzeit dashboard</title>
<script src="node_modules/socket.io-client/dist/socket.io.min.js"></script>
<script src="client.js"></script></head>
<body><h1>Third-party dashboard</h1><pre id="log"></pre></body></html>
"""

# The page's own script: the hub URL and the key come in the location hash.
CLIENT_JS = r"""
const params = new URLSearchParams(location.hash.slice(1));
const pending = new Map();
window.gz = { state: "connecting", received: [], error: null, rooms: null, me: null, transport: null };
const log = (line) => { document.getElementById("log").textContent += line + "\n"; };

const socket = io(params.get("hub"), { auth: { api_key: params.get("key") }, reconnection: false });

function request(event, payload = {}, target = "hub") {
  const env = { v: 1, id: crypto.randomUUID(), target, event, payload, ts: Date.now() };
  return new Promise((resolve, reject) => {
    pending.set(env.id, (answer) => ("error" in answer && answer.error ? reject(answer.error) : resolve(answer.ok)));
    socket.emit("envelope", env);
  });
}
function settle(env, answer) {
  const done = pending.get(env.correlation_id);
  if (done) { pending.delete(env.correlation_id); done(answer); }
}
socket.on("reply", (env) => settle(env, env.payload));
socket.on("gz_error", (env) => settle(env, { error: env.payload }));

socket.on("connect", async () => {
  gz.state = "connected";
  gz.transport = socket.io.engine.transport.name;
  try {
    gz.me = await request("auth_whoami");
    gz.rooms = (await request("subscribe", { rooms: ["events"] })).rooms;
    log(`connected as ${gz.me.user} (${gz.me.role}), rooms ${gz.rooms.join(", ")}`);
  } catch (e) {
    gz.error = `${e.code}: ${e.message}`;
  }
});
socket.on("connect_error", (e) => {
  gz.state = "refused";
  gz.error = String(e && e.message);
  log(`refused: ${gz.error}`);
});
// Workflow and task events arrive in `event_batch` envelopes (docs/protocol.md §5.6): each
// entry is one event, in seq order.
socket.on("event_batch", (env) => {
  for (const { event: name, payload } of env.payload.events) {
    gz.received.push([name, payload.workflow_id, payload.status]);
    if (name.startsWith("workflow_")) log(`${name} ${payload.workflow_id} ${payload.finished_tasks}/${payload.total_tasks}`);
  }
});
"""

WORKFLOW = """\
name: seen-by-a-third-party
tasks:
  - id: a
    method: python/execute
    parameters: { code: "result = 20" }
  - id: b
    method: python/execute
    parameters: { context: { a: "${a.result}" }, code: "result = context['a'] + 22" }
"""


class Static:
    """A static file server on 127.0.0.1 (another origin than the hub's)."""

    def __init__(self, root: Path):
        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401 - keep the test output clean
        pass


@pytest.fixture(scope="module")
def site(workdir):
    """socket.io-client from npm, and the page, in a folder served by two static servers."""
    root = workdir / "third-party"
    root.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    if not npm:
        pytest.fail("npm not found: apt-get install -y npm")
    subprocess.run([npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--no-save", "--loglevel=error",
                    "socket.io-client@4"], check=True, timeout=600, stdin=subprocess.DEVNULL)
    assert (root / "node_modules/socket.io-client/dist/socket.io.min.js").exists()
    (root / "index.html").write_text(PAGE)
    (root / "client.js").write_text(CLIENT_JS)
    allowed, other = Static(root), Static(root)
    yield allowed, other
    allowed.close()
    other.close()


@pytest.fixture(scope="module")
def origin_suite(site, workdir, request):
    allowed, _ = site
    s = Suite(workdir / "suite-origins", allowed_origins=[allowed.origin])
    request.addfinalizer(s.stop)
    s.start()
    s.viewer_key = s.make_key("third-party-viewer", "viewer")
    s.user_key = s.make_key("third-party-user", "user")
    return s


def open_page(page, origin, hub, key):
    page.goto(f"{origin}/index.html#hub={hub}&key={key}")
    page.wait_for_function("() => window.gz && window.gz.state !== 'connecting'", timeout=20000)
    return page.evaluate("window.gz")


def test_socket_io_client_from_an_allowed_origin_connects_and_receives_events(page, site, origin_suite):
    allowed, _ = site
    state = open_page(page, allowed.origin, origin_suite.url, origin_suite.viewer_key)
    assert state["state"] == "connected", state
    page.wait_for_function("() => window.gz.rooms !== null || window.gz.error !== null")
    state = page.evaluate("window.gz")
    assert state["error"] is None, state
    assert state["me"]["role"] == "VIEWER"
    assert "events" in state["rooms"]
    user = HubClient(origin_suite.url, origin_suite.user_key).connect()
    try:
        wf = user.submit_yaml(WORKFLOW)
    finally:
        user.close()
    page.wait_for_function(
        f"() => window.gz.received.some(([e, id, s]) => e === 'workflow_completed' && id === {json.dumps(wf)} && s === 'completed')",
        timeout=60000)
    received = page.evaluate("window.gz.received")
    names = [e for e, i, _ in received if i == wf]
    assert "workflow_submitted" in names and "task_completed" in names, names


def test_a_wrong_key_is_refused_with_gz4001(page, site, origin_suite):
    allowed, _ = site
    state = open_page(page, allowed.origin, origin_suite.url, "gzt_000000000000_" + "0" * 64)
    assert state["state"] == "refused"
    assert state["error"].startswith("GZ4001"), state


def test_the_same_page_from_an_origin_not_allowed_is_refused(page, site, origin_suite):
    _, other = site
    state = open_page(page, other.origin, origin_suite.url, origin_suite.viewer_key)
    assert state["state"] == "refused", state
    assert state["me"] is None
    log = (origin_suite.logs / "central-hub.log")
    wait_until("the hub logs the refusal",
               lambda: other.origin in log.read_text(errors="replace") and "refused a cross-origin request" in log.read_text(errors="replace"),
               10)
