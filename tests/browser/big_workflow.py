#!/usr/bin/env python3
"""The dashboard with one big workflow: a suite (binaries from $GLEITZEIT_BIN_DIR), a
workflow of N trivial Python tasks (default 100,000) validated by the hub and submitted,
and its page open in headless chromium while it runs. Prints the hub's validation time,
the time to the page's first task rows, the rows in the DOM, frame times while the events
stream in, the page's JS heap, and how many tasks the page saw complete.

    cargo build --release --bins
    GLEITZEIT_BIN_DIR=target/release python3 tests/browser/big_workflow.py [N]
"""
import sys, time, shutil, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite import Suite
from hubclient import HubClient
from playwright.sync_api import sync_playwright
work = Path(tempfile.mkdtemp(prefix="gz-big-workflow-"))
s = Suite(work)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
try:
    s.start(); u = s.make_key("ulla", "user")
    c = HubClient(s.url, u).connect()
    text = "name: hundred-thousand\ntasks:\n" + "".join(f"  - {{id: t{i}, method: python/execute, parameters: {{code: 'result = {i}'}}}}\n" for i in range(n))
    t = time.monotonic(); spec = c.spec_of(text); print("validate s", round(time.monotonic() - t, 2), flush=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(s.url + "/"); page.fill("#api-key", u); page.click("#signin-btn")
        page.wait_for_selector("#conn.conn-open")
        t = time.monotonic()
        wf = c.request("workflow_submit", {"spec": spec}, "type:queue-manager", timeout=300)["workflow_id"]
        print("submit s", round(time.monotonic() - t, 2), flush=True)
        t0 = time.monotonic()
        page.evaluate(f"location.hash = '#/workflow/{wf}'")
        page.wait_for_selector("#task-list .task-row[data-task=t0]", timeout=180000)
        print("first render s", round(time.monotonic() - t0, 2), "dom rows", page.locator("#task-list .vrow").count(), flush=True)
        gaps = page.evaluate("""() => new Promise((done) => { const g = []; let last = performance.now(); const end = last + 10000;
            function tick(now) { g.push(now - last); last = now; if (now < end) requestAnimationFrame(tick); else done(g); } requestAnimationFrame(tick); })""")
        gaps.sort()
        print("frames in 10 s", len(gaps), "worst ms", round(gaps[-1]), "p99 ms", round(gaps[int(len(gaps)*0.99)]), flush=True)
        print("completed seen", page.evaluate("window.gleitzeitDashboard.store.detail.tasks.filter(t => t.status === 'completed').length"))
        mem = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : null")
        print("js heap MiB", mem and round(mem / 2**20))
        page.wait_for_selector("#wf-status[data-status=completed]", timeout=600000)
        print("completed after s", round(time.monotonic() - t0, 1), "completed rows", page.evaluate("window.gleitzeitDashboard.store.detail.tasks.filter(t => t.status === 'completed').length"), flush=True)
        b.close()
    c.close()
finally:
    s.stop()
    shutil.rmtree(work, ignore_errors=True)
