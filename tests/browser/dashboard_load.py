#!/usr/bin/env python3
"""What open dashboards cost the suite: throughput of a workflow of N trivial Python tasks
with no dashboard, then with D dashboards, alternating, R rounds each.

    cargo build --release --bins
    GLEITZEIT_BIN_DIR=target/release python3 tests/browser/dashboard_load.py --mode page

A dashboard is emulated by a plain websocket client speaking Engine.IO/Socket.IO (the same
frames as the page's socket.js), with a VIEWER key, doing what the page does:

  page      the Overview page, what a dashboard left open does: room `components`;
            `list_components` and `workflow_get {summary}` of the active workflow every
            2 s; `GET /providers` every 3 s; `workflow_list` every 10 s; `hub_status` every 6 s.
  workflow  the page of the running workflow: the above plus room `workflow:<id>`, so
            every task event of that workflow reaches every dashboard.
  events    room `events` (every task event of every workflow) plus the page's polls: what
            a dashboard that joined the firehose would cost.
  browser   D real headless chromium pages of the dashboard on its Overview.

The emulated clients read every frame (answering pings) but do not decode events, and run
at nice 19 in their own process: dashboards run in browsers on other machines, so what is
measured is the suite's cost of serving them. Throughput is N / (finished_at - created_at)
as the queue-manager recorded it. Prints one line per run and the medians, and with --json
a JSON document.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing as mp
import os
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubclient import HubClient  # noqa: E402
from suite import Suite, bin_dir  # noqa: E402


# ---------------------------------------------------------------- emulated dashboards


def ws_frame(text: str) -> bytes:
    """A masked client text frame."""
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
    return head + mask + masked


def envelope(event: str, payload, target: str = "hub") -> str:
    env = {"v": 1, "id": str(uuid.uuid4()), "target": target, "event": event, "payload": payload,
           "ts": int(time.time() * 1000)}
    return "42" + json.dumps(["envelope", env])


class Conn:
    """One dashboard's websocket: handshake, CONNECT with the key, pings, frames skipped."""

    def __init__(self, port: int, key: str, rooms: list[str]):
        self.key = key
        self.rooms = rooms
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        nonce = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the websocket handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(f"websocket handshake refused: {status!r}")
        self.sock.setblocking(False)
        self.connected = False
        self.frames = 0
        self.bytes = 0
        self.out = bytearray()
        # the hub's first frames may have come with the handshake's answer
        self.buf = bytearray()
        self.parse(head.split(b"\r\n\r\n", 1)[1])

    def send(self, text: str) -> None:
        self.out += ws_frame(text)
        self.flush()

    def flush(self) -> None:
        while self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                return
            del self.out[:n]

    def on_readable(self) -> None:
        try:
            chunk = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        if not chunk:
            raise ConnectionError("closed by the hub")
        self.parse(chunk)

    def parse(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        buf = self.buf
        buf += chunk
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            hl = 2
            if b1 == 126:
                if end - pos < 4:
                    break
                b1 = int.from_bytes(buf[pos + 2:pos + 4], "big")
                hl = 4
            elif b1 == 127:
                if end - pos < 10:
                    break
                b1 = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hl = 10
            if end - pos < hl + b1:
                break
            start = pos + hl
            self.frames += 1
            # Only short frames matter: "2" (ping), "0{…}" (open), "40{…}" (connected).
            if b1 < 512:
                first = buf[start] if b1 else 0
                if b1 == 1 and first == 0x32:
                    self.send("3")
                elif first == 0x30:
                    self.send("40" + json.dumps({"api_key": self.key}))
                elif first == 0x34 and b1 > 1 and buf[start + 1] == 0x30:
                    self.connected = True
                    self.send(envelope("subscribe", {"rooms": self.rooms}))
                elif first == 0x34 and b1 > 1 and buf[start + 1] == 0x34:
                    raise ConnectionError(bytes(buf[start:start + b1]).decode(errors="replace"))
            pos = start + b1
        del buf[:pos]


def run_dashboards(port: int, key: str, url: str, mode: str, count: int, workflow_id: str, niceness: int,
                   ready, stop, stats_q):
    """A process holding `count` emulated dashboards until `stop` is set. It connects at
    normal priority, then lowers its own to `niceness` for the run."""
    rooms = ["components"]
    if mode == "workflow":
        rooms.append(f"workflow:{workflow_id}")
    elif mode == "events":
        rooms.append("events")
    conns = [Conn(port, key, rooms) for _ in range(count)]
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)
    deadline = time.monotonic() + 60
    while not all(c.connected for c in conns):
        if time.monotonic() > deadline:
            raise TimeoutError("dashboards did not connect")
        for k, _ in sel.select(0.2):
            k.data.on_readable()
    os.nice(niceness)
    ready.set()
    reconnects = 0

    def replace(c):
        """A lost connection (e.g. the hub dropped a client that fell behind) is counted and
        made again."""
        nonlocal reconnects
        reconnects += 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError, OSError):
            pass
        c.sock.close()
        fresh = Conn(port, key, rooms)
        fresh.frames, fresh.bytes = c.frames, c.bytes
        sel.register(fresh.sock, selectors.EVENT_READ, fresh)
        conns[conns.index(c)] = fresh

    def poll_http():
        while not stop.is_set():
            for _ in range(count):
                try:
                    req = urllib.request.Request(url + "/providers")
                    req.add_header("Authorization", f"Bearer {key}")
                    urllib.request.urlopen(req, timeout=10).read()
                except Exception:  # noqa: BLE001 - a failed poll is only a lost sample
                    pass
            stop.wait(3)

    threading.Thread(target=poll_http, daemon=True).start()
    tick = 0
    next_tick = time.monotonic() + 2
    while not stop.is_set():
        broken = []
        for k, _ in sel.select(0.1):
            try:
                k.data.on_readable()
            except (OSError, ConnectionError):
                broken.append(k.data)
        polls = time.monotonic() >= next_tick
        if polls:
            next_tick += 2
            tick += 1
        for c in conns:
            if c in broken:
                continue
            try:
                if polls:
                    c.send(envelope("list_components", {}))
                    c.send(envelope("workflow_get", {"workflow_id": workflow_id, "summary": True}, "type:queue-manager"))
                    if tick % 5 == 0:
                        c.send(envelope("workflow_list", {"limit": 200}, "type:queue-manager"))
                    if tick % 3 == 0:
                        c.send(envelope("hub_status", {}))
                elif c.out:
                    c.flush()
            except OSError:
                broken.append(c)
        for c in broken:
            replace(c)
    stats_q.put({"frames": sum(c.frames for c in conns), "bytes": sum(c.bytes for c in conns),
                 "cpu_s": round(sum(os.times()[:2]), 2), "reconnects": reconnects})
    for c in conns:
        c.sock.close()


class BrowserDashboards:
    """`count` real headless pages of the dashboard on its Overview."""

    def __init__(self, url: str, key: str, count: int):
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=os.environ.get("GLEITZEIT_CHROMIUM", "/usr/bin/chromium"),
                                               args=["--no-sandbox", "--disable-gpu"])
        self.pages = []
        for _ in range(count):
            page = self.browser.new_page()
            page.goto(url + "/")
            page.fill("#api-key", key)
            page.click("#signin-btn")
            page.wait_for_selector("#conn.conn-open", timeout=30000)
            self.pages.append(page)

    def close(self):
        self.browser.close()
        self.pw.stop()


# ---------------------------------------------------------------- measuring


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Events the queue-manager sends to the rooms (one envelope each before event batches; a
#: handful of `event_batch` envelopes since).
ROOM_EVENTS = ("event_batch", "workflow_submitted", "workflow_started", "workflow_progress", "workflow_completed",
               "workflow_failed", "workflow_cancelled", "task_started", "task_completed", "task_failed",
               "task_retrying", "task_skipped")


def room_messages(url: str, key: str) -> float:
    """Envelopes the hub accepted for the workflow rooms so far (`gleitzeit_hub_messages_total`)."""
    req = urllib.request.Request(url + "/metrics")
    req.add_header("Authorization", f"Bearer {key}")
    total = 0.0
    for line in urllib.request.urlopen(req, timeout=30).read().decode().splitlines():
        if line.startswith("gleitzeit_hub_messages_total{"):
            labels, _, value = line.rpartition(" ")
            if any(f'event="{e}"' in labels for e in ROOM_EVENTS):
                total += float(value)
    return total


def one_run(suite: Suite, client: HubClient, spec: dict, dashboards: int, mode: str, viewer_key: str,
            niceness: int = 19) -> dict:
    wf = "wf-" + uuid.uuid4().hex
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    ready = ctx.Event()
    stats_q = ctx.Queue()
    proc = None
    browser = None
    if dashboards and mode == "browser":
        browser = BrowserDashboards(suite.url, viewer_key, dashboards)
        time.sleep(3)
    elif dashboards:
        proc = ctx.Process(target=run_dashboards,
                          args=(suite.port, viewer_key, suite.url, mode, dashboards, wf, niceness, ready, stop, stats_q),
                           daemon=True)
        proc.start()
        if not ready.wait(90):
            raise TimeoutError("dashboards not ready")
        time.sleep(2)  # a round of polls before the run
    cpu_before = {name: proc_cpu_seconds(p.pid) for name, p in suite.procs}
    messages_before = room_messages(suite.url, suite.admin_key)
    try:
        client.request("workflow_submit", {"spec": spec, "workflow_id": wf}, "type:queue-manager", timeout=120)
        got = client.wait_status(wf, {"completed", "failed", "cancelled"}, 600)
    finally:
        stop.set()
        extra = {}
        if proc:
            try:
                extra = stats_q.get(timeout=30)
            except Exception:  # noqa: BLE001
                extra = {}
            proc.join(30)
        if browser:
            browser.close()
    cpu = {name: round(proc_cpu_seconds(p.pid) - cpu_before[name], 2) for name, p in suite.procs}
    messages = room_messages(suite.url, suite.admin_key) - messages_before
    w = got["workflow"]
    seconds = (w["finished_at"] - w["created_at"]) / 1000
    return {"dashboards": dashboards, "status": w["status"], "seconds": seconds,
            "tasks_per_s": len(spec["tasks"]) / seconds, "cpu_s": cpu, "suite_cpu_s": round(sum(cpu.values()), 2),
            "loadavg": os.getloadavg()[0], "room_messages_per_task": round(messages / len(spec["tasks"]), 3),
            **({"clients": extra} if extra else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dashboards", type=int, default=20)
    ap.add_argument("--mode", choices=["page", "workflow", "events", "browser"], default="page")
    ap.add_argument("--nice", type=int, default=19,
                    help="niceness of the emulated dashboards during a run (default 19: they use idle CPU, "
                         "as browsers on other machines would)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gz-dashboard-load-"))
    suite = Suite(work)
    try:
        suite.start()
        viewer = suite.make_key("load-viewer", "viewer")
        client = HubClient(suite.url, suite.admin_key).connect()
        text = "name: load\ntasks:\n" + "".join(
            f"  - {{id: t{i}, method: python/execute, parameters: {{code: 'result = {i}'}}}}\n" for i in range(args.tasks))
        spec = client.spec_of(text)
        print(f"suite at {suite.url} ({bin_dir()}), {args.tasks} tasks, mode {args.mode}", file=sys.stderr)
        one_run(suite, client, spec, 0, args.mode, viewer, args.nice)  # warm-up
        runs = []
        for r in range(args.rounds):
            order = (0, args.dashboards) if r % 2 == 0 else (args.dashboards, 0)
            for d in order:
                res = one_run(suite, client, spec, d, args.mode, viewer, args.nice)
                runs.append(res)
                print(f"round {r + 1}: {d:>2} dashboards: {res['tasks_per_s']:8.0f} tasks/s "
                      f"({res['seconds']:.2f} s, {res['status']}, load {res['loadavg']:.1f}) "
                      f"suite cpu {res['suite_cpu_s']} s {res['cpu_s']}, "
                      f"{res['room_messages_per_task']} room messages per task"
                      + (f" clients {res['clients']}" if 'clients' in res else ""), file=sys.stderr)
        client.close()
    finally:
        suite.stop()
    def median(key, d):
        return statistics.median(r[key] for r in runs if r["dashboards"] == d)

    base, loaded = median("tasks_per_s", 0), median("tasks_per_s", args.dashboards)
    cpu0, cpu1 = median("suite_cpu_s", 0), median("suite_cpu_s", args.dashboards)
    hub0 = statistics.median(r["cpu_s"]["central-hub"] for r in runs if r["dashboards"] == 0)
    hub1 = statistics.median(r["cpu_s"]["central-hub"] for r in runs if r["dashboards"] == args.dashboards)
    summary = {"mode": args.mode, "tasks": args.tasks, "rounds": args.rounds, "dashboards": args.dashboards,
               "nice": args.nice, "median_tasks_per_s_without": round(base), "median_tasks_per_s_with": round(loaded),
               "ratio": round(loaded / base, 3), "slowdown_percent": round(100 * (1 - loaded / base), 1),
               "median_suite_cpu_s_without": cpu0, "median_suite_cpu_s_with": cpu1,
               "extra_cpu_percent": round(100 * (cpu1 / cpu0 - 1), 1),
               "median_hub_cpu_s_without": hub0, "median_hub_cpu_s_with": hub1,
               "room_messages_per_task": round(statistics.median(r["room_messages_per_task"] for r in runs), 3),
               "runs": runs}
    print(f"mode {args.mode}: without dashboards {base:.0f} tasks/s, with {args.dashboards}: {loaded:.0f} tasks/s, "
          f"ratio {loaded / base:.3f} ({summary['slowdown_percent']} % slower); suite CPU per run "
          f"{cpu0:.1f} s -> {cpu1:.1f} s ({summary['extra_cpu_percent']:+} %), hub {hub0:.1f} s -> {hub1:.1f} s; "
          f"{summary['room_messages_per_task']} room messages per task")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
