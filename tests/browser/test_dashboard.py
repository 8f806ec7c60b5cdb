"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against the real
suite: signing in by role, components live, a workflow submitted in the page reaching
"completed" live, a failing task's GZ code and hint, cancel, YAML errors with line and
column, a 20,000-task workflow, and the screenshots in docs/img/.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hubclient import HubClient
from suite import REPO, wait_until

IMG = REPO / "docs" / "img"

REPORT_YAML = """\
name: daily-report
description: fan-out and join, as drawn in docs/img/dashboard-workflow.png
tasks:
  - id: fetch
    method: python/execute
    parameters:
      code: |
        import time; time.sleep(0.4)
        result = {"rows": [4, 8, 15, 16, 23, 42]}
  - id: clean
    method: python/execute
    parameters:
      context: { rows: "${fetch.result.rows}" }
      code: "result = sorted(set(context['rows']))"
  - id: total
    method: python/execute
    parameters:
      context: { rows: "${clean.result}" }
      code: "import time; time.sleep(0.5); result = sum(context['rows'])"
  - id: largest
    method: python/execute
    parameters:
      context: { rows: "${clean.result}" }
      code: "result = max(context['rows'])"
  - id: count
    method: python/execute
    parameters:
      context: { rows: "${clean.result}" }
      code: "result = len(context['rows'])"
  - id: report
    method: python/execute
    parameters:
      context: { total: "${total.result}", largest: "${largest.result}", count: "${count.result}" }
      code: "result = f\\"{context['count']} rows, sum {context['total']}, max {context['largest']}\\""
"""

FAILING_YAML = """\
name: failing-flow
tasks:
  - id: ok
    method: python/execute
    parameters: { code: "result = 1" }
  - id: boom
    method: python/execute
    dependencies: [ok]
    parameters:
      code: "raise ValueError('the numbers do not add up')"
"""

SLEEPING_YAML = """\
name: sleepy
tasks:
  - id: nap
    method: python/execute
    timeout: 120
    parameters: { code: "import time; time.sleep(30); result = 'woke up'" }
"""

BAD_YAML = """\
name: typo
tasks:
  - id: a
    method: python/execute
    paramters: { code: "result = 1" }
"""

BROKEN_YAML = """\
name: broken
tasks:
  - id: a
    method: python/execute
    parameters: { code: "result = 1"
"""


def sign_in(page, suite, key, expect_role=None):
    page.goto(suite.url + "/")
    page.fill("#api-key", key)
    page.click("#signin-btn")
    if expect_role:
        page.wait_for_function(f"() => document.querySelector('#who').textContent.includes({json.dumps(expect_role)})")
        page.wait_for_selector("#conn.conn-open")


def submit_in_page(page, yaml_text):
    page.click("nav a[data-view=submit]")
    page.fill("#yaml", yaml_text)
    page.wait_for_selector("#validation-state.ok-text")
    page.wait_for_function("() => !document.querySelector('#submit-btn').disabled")
    page.click("#submit-btn")
    page.wait_for_selector("#wf-status")
    page.wait_for_function("() => location.hash.startsWith('#/workflow/wf-')")
    return page.evaluate("decodeURIComponent(location.hash.split('/')[2])")


def no_page_errors(page):
    assert not [p for p in page.problems if p.startswith("page error")], page.problems


# ---- the hub's side: assets and /validate ----


def test_assets_are_served_with_a_strict_policy_and_validate_needs_a_key(suite):
    with urllib.request.urlopen(suite.url + "/", timeout=10) as res:
        assert res.status == 200
        assert res.headers["Content-Type"].startswith("text/html")
        csp = res.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
        assert "unsafe-inline" not in csp
        assert res.headers["X-Content-Type-Options"] == "nosniff"
        assert res.headers["Cache-Control"] == "no-cache"
        assert b'src="/dashboard/app.js"' in res.read()
    with urllib.request.urlopen(suite.url + "/dashboard/views/workflow.js", timeout=10) as res:
        assert res.headers["Content-Type"].startswith("text/javascript")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(suite.url + "/dashboard/nope.js", timeout=10)
    assert e.value.code == 404
    req = urllib.request.Request(suite.url + "/validate", data=b"name: x\ntasks: []\n", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    assert json.loads(e.value.read())["code"] == "GZ4001"
    answer = suite.http_json("/validate", key=suite.viewer_key, data=BAD_YAML.encode(), method="POST")
    assert answer["valid"] is False and answer["spec"] is None
    d = answer["diagnostics"][0]
    assert (d["code"], d["line"], d["column"], d["severity"]) == ("GZ7001", 5, 5, "error")
    assert d["hint"]


# ---- signing in ----


def test_a_wrong_key_shows_the_gz4001_message(page, suite):
    sign_in(page, suite, "gzt_000000000000_" + "0" * 64)
    page.wait_for_selector("#signin-error:not([hidden])")
    text = page.text_content("#signin-error")
    assert "GZ4001" in text, text
    assert page.is_hidden("#app")
    sign_in(page, suite, "not-a-key")
    page.wait_for_function("() => document.querySelector('#signin-error').textContent.includes('GZ4001')")
    no_page_errors(page)


# ---- components ----


def test_overview_shows_the_components_and_their_joins_and_losses_live(page, suite):
    sign_in(page, suite, suite.viewer_key, "VIEWER")
    for t in ("queue-manager", "dependency-resolver", "execution-engine", "python-provider"):
        page.wait_for_selector(f"#components-body tr.component-row[data-type={t}]")
    row = page.locator("#components-body tr.component-row[data-type=python-provider]").first
    assert "healthy" in row.text_content()
    # a second provider joins, then is killed: the page shows both without reloading
    extra = suite.spawn_service("python-provider", "python-provider-extra", "--workers", "1")
    try:
        page.wait_for_selector("#components-body tr.component-row[data-id=python-provider-extra]:not(.gone)", timeout=30000)
        page.wait_for_function("() => document.querySelector('#activity').textContent.includes('python-provider-extra joined')")
    finally:
        os.kill(extra.pid, signal.SIGKILL)
        extra.wait(timeout=10)
    page.wait_for_selector("#components-body tr.component-row.gone[data-id=python-provider-extra]", timeout=30000)
    assert "left" in page.text_content("#components-body tr.gone[data-id=python-provider-extra]")
    page.wait_for_function("() => document.querySelector('#activity').textContent.includes('python-provider-extra left')")
    # the charts are drawn by the page itself, in SVG
    assert page.locator("svg.chart").count() == 3
    no_page_errors(page)


# ---- workflows, as a USER ----


def test_a_workflow_submitted_in_the_page_reaches_completed_live(page, suite):
    sign_in(page, suite, suite.user_key, "USER")
    wf = submit_in_page(page, REPORT_YAML)
    # the graph: six tasks, seven dependencies drawn
    page.wait_for_selector("#graph svg.graph g.node[data-task=report]")
    assert page.locator("#graph g.node").count() == 6
    assert page.locator("#graph path.edge").count() == 7
    # states change live, without reloading: a task is seen running before the end
    page.wait_for_selector("#graph g.node.s-running, #graph g.node.s-completed", timeout=30000)
    page.wait_for_selector("#wf-status[data-status=completed]", timeout=60000)
    page.wait_for_function("() => document.querySelectorAll('#graph g.node.s-completed').length === 6")
    assert "6 / 6 finished" in page.text_content("#wf-counts")
    page.click("#task-list .task-row[data-task=report]")
    page.wait_for_selector("#task-result")
    assert "6 rows, sum 108, max 42" in page.text_content("#task-result")
    detail = page.text_content("#task-detail")
    assert "python-provider" in detail and "Attempts" in detail
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "dashboard-workflow.png"), full_page=True)
    # it is in the list, completed
    page.click("nav a[data-view=workflows]")
    page.wait_for_selector(f".wf-row[data-id='{wf}'][data-status=completed]")
    no_page_errors(page)


FAN_OUT_YAML = """
name: fan-out in the page
tasks:
  - id: list
    method: python/execute
    parameters: { code: "import time; time.sleep(1.0); result = ['a', 'b', 'c', 'd', 'e']" }
  - id: each
    method: python/execute
    batch: { from: "${list.result}" }
    parameters: { code: "result = context['letter'].upper()", context: { letter: "${item}" } }
"""


def test_the_items_of_a_fan_out_appear_live_in_the_list_and_the_graph(page, suite):
    sign_in(page, suite, suite.user_key, "USER")
    submit_in_page(page, FAN_OUT_YAML)
    page.wait_for_selector("#graph svg.graph g.node[data-task=each]")
    # the items are made when `list` ends, after the page loaded the workflow
    page.wait_for_selector("#task-list .task-row[data-task=each-00005]", timeout=30000)
    page.wait_for_selector("#graph svg.graph g.node[data-task=each-00003]")
    page.wait_for_selector("#wf-status[data-status=completed]", timeout=60000)
    page.wait_for_function("() => document.querySelectorAll('#graph g.node.s-completed').length === 7")
    page.click("#task-list .task-row[data-task=each]")
    page.wait_for_selector("#task-result")
    joined = page.text_content("#task-result")
    assert '"A"' in joined and '"E"' in joined, joined
    no_page_errors(page)


def test_a_failing_task_shows_its_gz_code_and_hint(page, suite):
    sign_in(page, suite, suite.user_key, "USER")
    submit_in_page(page, FAILING_YAML)
    page.wait_for_selector("#wf-status[data-status=failed]", timeout=60000)
    assert "GZ2001" in page.text_content("#wf-error")
    row = page.locator("#task-list .task-row[data-task=boom]")
    row.wait_for()
    wait_until("GZ2025 in the task's row", lambda: "GZ2025" in row.text_content(), 10)
    row.click()
    page.wait_for_selector("#task-error")
    text = page.text_content("#task-error")
    assert "GZ2025" in text
    assert "Read the traceback" in text  # the code's hint
    assert "ValueError" in text and "the numbers do not add up" in text
    no_page_errors(page)


def test_cancel_of_a_running_workflow_works(page, suite):
    sign_in(page, suite, suite.user_key, "USER")
    submit_in_page(page, SLEEPING_YAML)
    page.wait_for_selector("#task-list .task-row[data-task=nap][data-status=running]", timeout=30000)
    page.click("#cancel-btn")
    assert "again" in page.text_content("#cancel-btn")
    page.click("#cancel-btn")
    page.wait_for_selector("#cancel-result")
    page.wait_for_selector("#wf-status[data-status=cancelled]", timeout=15000)
    page.wait_for_selector("#task-list .task-row[data-task=nap][data-status=cancelled]")
    assert page.is_hidden("#cancel-btn")
    no_page_errors(page)


def test_bad_yaml_shows_line_and_column_before_submitting(page, suite):
    sign_in(page, suite, suite.user_key, "USER")
    page.click("nav a[data-view=submit]")
    page.fill("#yaml", BAD_YAML)
    diag = page.locator("#diagnostics li.diag").first
    diag.wait_for()
    text = diag.text_content()
    assert "GZ7001" in text and "line 5, column 5" in text and "paramters" in text, text
    assert "parameters" in text  # the hint suggests the right key
    assert page.is_disabled("#submit-btn")
    # clicking the diagnostic puts the caret on that line
    diag.click()
    line = page.evaluate("(() => { const t = document.querySelector('#yaml'); return t.value.slice(0, t.selectionStart).split('\\n').length; })()")
    assert line == 5
    page.fill("#yaml", BROKEN_YAML)
    page.wait_for_function("() => document.querySelector('#diagnostics').textContent.includes('GZ7010')")
    text = page.text_content("#diagnostics")
    assert "line " in text and "column " in text, text
    assert page.is_disabled("#submit-btn")
    # an uploaded file is validated the same way
    page.set_input_files("#yaml-file", files=[{"name": "typo.yaml", "mimeType": "text/yaml", "buffer": BAD_YAML.encode()}])
    page.wait_for_function("() => document.querySelector('#diagnostics').textContent.includes('GZ7001')")
    assert page.input_value("#yaml") == BAD_YAML
    assert "line 5, column 5" in page.text_content("#diagnostics")
    no_page_errors(page)


# ---- as a VIEWER ----


def test_a_viewer_sees_everything_but_cannot_submit_or_cancel(page, suite):
    user = HubClient(suite.url, suite.user_key).connect()
    try:
        wf = user.submit_yaml(SLEEPING_YAML.replace("sleepy", "sleepy-for-viewer"))
        sign_in(page, suite, suite.viewer_key, "VIEWER")
        # the viewer sees the USER's workflow, running
        page.click("nav a[data-view=workflows]")
        page.wait_for_selector(f".wf-row[data-id='{wf}']", timeout=20000)
        page.click(f".wf-row[data-id='{wf}']")
        page.wait_for_selector("#task-list .task-row[data-task=nap][data-status=running]", timeout=30000)
        assert page.is_disabled("#cancel-btn")
        # the submit form is there, its button disabled
        page.click("nav a[data-view=submit]")
        assert "VIEWER" in page.text_content("#role-notice")
        page.fill("#yaml", REPORT_YAML)
        page.wait_for_selector("#validation-state.ok-text")
        assert page.is_disabled("#submit-btn")
        # forcing the button: the hub refuses with GZ4003, and the page says so
        page.evaluate("document.querySelector('#submit-btn').disabled = false")
        page.click("#submit-btn")
        page.wait_for_selector("#submit-result .error-block")
        assert "GZ4003" in page.text_content("#submit-result")
        assert page.evaluate("location.hash") == "#/submit"
    finally:
        try:
            user.request("workflow_cancel", {"workflow_id": wf}, "type:queue-manager")
        finally:
            user.close()
    no_page_errors(page)


# ---- LLM endpoints and streamed tokens ----


def test_llm_endpoints_and_tokens_streaming_into_a_running_task(page, suite):
    sim = suite.spawn_llm_sim("--tokens-per-sec", "10", "--latency-ms", "200")
    provider = suite.spawn_service("ollama-provider", "ollama-provider-dash", "--urls", sim)
    try:
        sign_in(page, suite, suite.user_key, "USER")
        endpoint = page.locator("#endpoints-body tr.endpoint-row[data-provider=ollama-provider-dash]")
        endpoint.wait_for(timeout=30000)
        wait_until("the endpoint's health and models", lambda: "healthy" in endpoint.text_content()
                   and "llama3.2:latest" in endpoint.text_content(), 30)
        assert sim.split("//")[1] in endpoint.text_content()  # its URL
        words = " ".join(f"word{i}" for i in range(40))
        yaml_text = (
            "name: streaming\n"
            "tasks:\n"
            "  - id: chat\n"
            "    method: llm/chat\n"
            "    parameters:\n"
            "      model: llama3.2:latest\n"
            "      stream: true\n"
            f"      messages: [{{role: user, content: '{words}'}}]\n"
        )
        submit_in_page(page, yaml_text)
        page.click("#task-list .task-row[data-task=chat]")
        # text arrives while the task still runs
        page.wait_for_selector("#task-stream", timeout=30000)
        page.wait_for_function("() => document.querySelector('#task-stream').textContent.includes('word')")
        running = page.get_attribute("#task-list .task-row[data-task=chat]", "data-status")
        assert running == "running", running
        assert page.locator("#task-detail .live-dot").count() == 1
        page.wait_for_selector("#wf-status[data-status=completed]", timeout=60000)
        page.wait_for_selector("#task-result")
        assert "word39" in page.text_content("#task-stream")
        assert "word39" in page.text_content("#task-result")
        assert "Tokens" in page.text_content("#task-detail")
        # the owning queue-manager is learnt from workflow events, not from the provider's text
        assert "queue-manager-" in page.text_content("#wf-meta")
    finally:
        os.kill(provider.pid, signal.SIGTERM)
        provider.wait(timeout=15)
    no_page_errors(page)


# ---- the page's own bookkeeping, run in the browser ----


def test_events_are_applied_once_in_order_and_gaps_are_noticed(page, suite):
    page.goto(suite.url + "/")
    result = page.evaluate("""async () => {
        const { WorkflowDetail } = await import('/dashboard/store.js');
        const d = new WorkflowDetail('wf-x');
        const task = (id) => ({ task_id: id, name: id, method: 'python/execute', status: 'pending', attempts: 0 });
        const ev = (seq, status, attempt, extra = {}) =>
          ({ workflow_id: 'wf-x', task_id: 'a', status, attempt, seq, result: null, error: null, ...extra });
        d.apply('task_started', ev(1, 'running', 1), 1000);          // before the snapshot: buffered
        d.loadSnapshot({ workflow: { id: 'wf-x', status: 'running', total_tasks: 2 }, counts: {}, tasks: [task('a'), task('b')] });
        const out = { afterSnapshot: d.tasks[0].status, contig: d.contig };
        d.apply('task_completed', ev(2, 'completed', 1, { result: 42 }), 2000);
        d.apply('task_started', ev(1, 'running', 1), 1000);          // a duplicate: ignored
        out.dup = d.tasks[0].status;
        d.apply('task_started', { ...ev(4, 'running', 1), task_id: 'b' }, 3000);  // seq 3 missing
        out.gap = d.gapSince > 0 && d.contig === 2;
        d.apply('workflow_progress', { workflow_id: 'wf-x', status: 'running', total_tasks: 2, finished_tasks: 1, completed_tasks: 1, failed_tasks: 0, skipped_tasks: 0, seq: 3 }, 2500);
        out.closed = d.gapSince === 0 && d.contig === 4;
        d.apply('task_retrying', { ...ev(5, 'retrying', 1), task_id: 'b', error: { code: 'GZ2025', message: 'x' } }, 3500);
        d.apply('task_started', { ...ev(6, 'running', 2), task_id: 'b' }, 3600);
        d.apply('task_started', { ...ev(7, 'running', 1), task_id: 'b' }, 3700);   // an older attempt: ignored
        out.b = [d.tasks[1].status, d.tasks[1].attempt];
        d.apply('workflow_cancelled', { workflow_id: 'wf-x', status: 'cancelled', total_tasks: 2, finished_tasks: 2, seq: 8, error: { code: 'GZ2006' } }, 4000);
        out.cancelled = [d.record.status, d.tasks[1].status];
        out.result = d.tasks[0].result;
        return out;
    }""")
    assert result == {"afterSnapshot": "running", "contig": 1, "dup": "completed", "gap": True, "closed": True,
                      "b": ["running", 2], "cancelled": ["cancelled", "cancelled"], "result": 42}, result


def test_a_hidden_tab_leaves_the_room_and_catches_up_when_shown(page, suite):
    sign_in(page, suite, suite.user_key, "USER")
    wf = submit_in_page(page, "name: while-hidden\ntasks:\n" + "".join(
        f"  - id: h{i}\n    method: python/execute\n" + (f"    dependencies: [h{i - 1}]\n" if i else "")
        + "    parameters: {code: 'import time; time.sleep(1); result = 1'}\n" for i in range(4)))
    page.wait_for_selector("#task-list .task-row[data-task=h0][data-status=running]", timeout=30000)
    room = f"workflow:{wf}"
    page.evaluate("""() => {
        window.gleitzeitDashboard.hiddenLeaveMs = 0;
        Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_function(f"() => window.gleitzeitDashboard.dormant && !window.gleitzeitDashboard.socket.rooms.has({json.dumps(room)})")
    user = HubClient(suite.url, suite.user_key).connect()
    try:
        user.wait_status(wf, {"completed"}, 60)
    finally:
        user.close()
    assert page.get_attribute("#wf-status", "data-status") == "running"  # nothing arrived while dormant
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', { value: 'visible', configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    try:
        page.wait_for_selector("#wf-status[data-status=completed]", timeout=30000)
    except Exception:
        print("STATE", page.evaluate("""(() => { const a = window.gleitzeitDashboard, d = a.store.detail;
            return { dormant: a.dormant, rooms: [...a.socket.rooms], contig: d.contig, ahead: [...d.ahead], maxSeq: d.maxSeq,
                     catchUps: d.catchUps, caughtUp: d.caughtUp, snapshots: d.snapshots, gap: d.gapSince, status: d.record && d.record.status,
                     owner: d.ownerQm, err: d.error && String(d.error), log: a.store.activity.slice(0, 5) }; })()"""))
        raise
    page.wait_for_function("() => document.querySelectorAll('#task-list .task-row[data-status=completed]').length === 4")
    assert page.evaluate(f"window.gleitzeitDashboard.socket.rooms.has({json.dumps(room)})")
    # what it missed came back by seq (workflow_events), or by a fresh snapshot when it had seen no event yet
    d = page.evaluate("(({caughtUp, snapshots}) => ({caughtUp, snapshots}))(window.gleitzeitDashboard.store.detail)")
    assert d["caughtUp"] > 0 or d["snapshots"] > 1, d
    no_page_errors(page)


# ---- big workflows ----


def test_a_20000_task_workflow_renders_without_freezing(page, suite, workdir):
    n = 20000
    lines = ["name: twenty-thousand", "tasks:"]
    for i in range(n):
        lines.append(f"  - {{id: t{i}, method: python/execute, parameters: {{code: 'result = {i}'}}}}")
    user = HubClient(suite.url, suite.user_key).connect()
    try:
        wf = user.submit_yaml("\n".join(lines) + "\n")
        sign_in(page, suite, suite.user_key, "USER")
        page.evaluate("""() => {
            window.__long = [];
            new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
              .observe({ type: 'longtask', buffered: false });
        }""")
        t0 = time.monotonic()
        page.evaluate(f"location.hash = '#/workflow/{wf}'")
        page.wait_for_selector("#task-list .task-row[data-task=t0]", timeout=60000)
        first_render = time.monotonic() - t0
        page.wait_for_function(f"() => document.querySelector('#task-count').textContent.includes('of {n:,} tasks')")
        rows = page.locator("#task-list .vrow").count()
        assert 0 < rows < 200, rows
        assert "20,000 tasks: the graph is drawn" in page.text_content("#graph-note")
        page.wait_for_selector("#graph .statusbar")
        # stay responsive while the tasks run and their events stream in
        gaps = page.evaluate("""() => new Promise((done) => {
            const gaps = []; let last = performance.now(); const end = last + 5000;
            function tick(now) { gaps.push(now - last); last = now; if (now < end) requestAnimationFrame(tick); else done(gaps); }
            requestAnimationFrame(tick);
        })""")
        worst_frame = max(gaps)
        long_tasks = page.evaluate("window.__long")
        # the end of the list is reachable and rendered on demand
        page.evaluate("document.querySelector('#task-list .vlist').scrollTop = 1e9")
        page.wait_for_selector(f"#task-list .task-row[data-task=t{n - 1}]")
        assert page.locator("#task-list .vrow").count() < 200
        finished = page.evaluate("window.gleitzeitDashboard.store.detail.tasks.filter(t => t.status === 'completed').length")
        result = {"tasks": n, "first_render_s": round(first_render, 2), "dom_rows": rows,
                  "worst_frame_ms": round(worst_frame), "long_tasks_ms": [round(x) for x in long_tasks],
                  "completed_seen_live": finished}
        print("20,000-task workflow:", json.dumps(result))
        (workdir / "big-workflow.json").write_text(json.dumps(result))
        assert first_render < 30, result
        assert worst_frame < 1500, result
        # cancel it from the page, so the suite is free again
        page.evaluate("document.querySelector('#task-list .vlist').scrollTop = 0")
        if page.is_visible("#cancel-btn"):
            page.click("#cancel-btn")
            page.click("#cancel-btn")
            page.wait_for_selector("#wf-status[data-status=cancelled], #wf-status[data-status=completed]", timeout=60000)
    finally:
        try:
            user.request("workflow_cancel", {"workflow_id": wf}, "type:queue-manager")
        except Exception:  # noqa: BLE001 - finished already
            pass
        user.close()
    no_page_errors(page)


def test_overview_screenshot_with_charts(page, suite):
    sign_in(page, suite, suite.viewer_key, "VIEWER")
    page.wait_for_selector("#components-body tr.component-row")
    user = HubClient(suite.url, suite.user_key).connect()
    try:
        lines = ["name: overview-load", "tasks:"]
        # small sleeps, so the run lasts several samples and the charts draw a curve
        lines += [f"  - {{id: t{i}, method: python/execute, parameters: {{code: 'import time; time.sleep(0.025); result = {i}'}}}}"
                  for i in range(1500)]
        wf = user.submit_yaml("\n".join(lines) + "\n")
        user.submit_yaml(FAILING_YAML)
        # The counts come from polls every 2 s; a fast machine may finish the workflows between
        # two polls, so wait for them to be known, running or not.
        page.wait_for_function("() => !document.querySelector('#card-workflows .card-sub').textContent.startsWith('0 ')", timeout=20000)
        user.wait_status(wf, {"completed"}, 180)
    finally:
        user.close()
    time.sleep(2.5)
    # The rates come from the counts sampled every 2 s (a workflow that finished between two
    # samples is counted when the list first shows it, up to 10 s later).
    page.wait_for_function("() => window.gleitzeitDashboard.store.series.finishedTotal >= 1500", timeout=30000)
    IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMG / "dashboard-overview.png"), full_page=True)
    no_page_errors(page)


# ---- last: the hub goes away and comes back ----


def test_the_page_reconnects_and_catches_up_after_the_hub_restarts(page, suite):
    chain = ["name: through-a-restart", "tasks:"]
    for i in range(6):
        dep = f"\n    dependencies: [s{i - 1}]" if i else ""
        chain.append(f"  - id: s{i}\n    method: python/execute{dep}\n"
                     f"    parameters: {{code: 'import time; time.sleep(1.5); result = {i}'}}")
    sign_in(page, suite, suite.viewer_key, "VIEWER")
    user = HubClient(suite.url, suite.user_key).connect()
    try:
        wf = user.submit_yaml("\n".join(chain) + "\n")
    finally:
        user.close()
    page.evaluate(f"location.hash = '#/workflow/{wf}'")
    page.wait_for_selector("#task-list .task-row[data-task=s0][data-status=completed]", timeout=30000)
    suite.kill_hub()
    page.wait_for_selector("#conn.conn-reconnecting", timeout=60000)
    time.sleep(2)  # tasks finish while the page is cut off; their events go nowhere
    suite.restart_hub()
    page.wait_for_selector("#conn.conn-open", timeout=60000)
    page.wait_for_selector("#wf-status[data-status=completed]", timeout=60000)
    page.wait_for_function("() => document.querySelectorAll('#task-list .task-row[data-status=completed]').length === 6")
    assert page.evaluate("window.gleitzeitDashboard.socket.stats.reconnects") >= 1
    # what it missed came from workflow_events by seq (or, had some been dropped, a reload)
    page.wait_for_function("() => { const d = window.gleitzeitDashboard.store.detail; return d.catchUps > 0 || d.snapshots > 1; }")
    d = page.evaluate("(({caughtUp, catchUps, snapshots}) => ({caughtUp, catchUps, snapshots}))(window.gleitzeitDashboard.store.detail)")
    print("after the restart:", d)
    assert d["catchUps"] >= 1 or d["snapshots"] > 1, d
    # a catch-up from the start replays every kept event, each applied once, changing nothing
    caught = page.evaluate("""async () => {
        const app = window.gleitzeitDashboard, d = app.store.detail;
        d.contig = 0; d.ahead.clear(); d.caughtUp = 0;
        await app.catchUp(d);
        return { caughtUp: d.caughtUp, contig: d.contig, maxSeq: d.maxSeq,
                 completed: d.tasks.filter((t) => t.status === 'completed').length };
    }""")
    assert caught["caughtUp"] >= 14 and caught["completed"] == 6, caught  # submitted, started, 6 x 2 task events, …
    assert caught["contig"] >= caught["maxSeq"], caught
    assert page.is_visible("#app")  # never sent back to the sign-in form
    no_page_errors(page)
