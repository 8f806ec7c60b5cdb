"""Task services (``@gleitzeit_task`` functions) serving workflows of the real suite."""

from __future__ import annotations

import ast
import asyncio
import os
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from sdk_support import run, wait_until
from gleitzeit import GleitzeitCluster, GleitzeitError, TaskService, Workflow, current_task, gleitzeit_task
from gleitzeit.decorators import TaskFunction, get_function, unregister


# ---------------------------------------------------------------------- functions served


def add(a: int, b: int = 0) -> int:
    """Adds two integers."""
    return a + b


async def shout(text: str, times: int = 1) -> str:
    """Upper-cases a text."""
    await asyncio.sleep(0.01)
    return " ".join([text.upper()] * times)


def boom(message: str) -> None:
    raise ValueError("boom: %s" % message)


def not_json() -> object:
    return object()


async def wait_for_cancel(marker: str) -> str:
    Path(marker + ".started").write_text("started")
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        Path(marker + ".cancelled").write_text("CancelledError")
        raise
    return "not cancelled"


def sleepy(seconds: float) -> str:
    task = current_task()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not task.cancelled:
        time.sleep(0.01)
    return "slept"


def context_of() -> Dict[str, object]:
    task = current_task()
    task.progress("working on %s" % task.task_id)
    return {"workflow_id": task.workflow_id, "task_id": task.task_id, "attempt": task.attempt}


FUNCTIONS = [
    TaskFunction(add, category="math"),
    TaskFunction(shout, method="text/shout"),
    TaskFunction(boom),
    TaskFunction(not_json),
    TaskFunction(wait_for_cancel),
    TaskFunction(sleepy, timeout=0.5),
    TaskFunction(context_of),
]


def cluster_of(suite) -> GleitzeitCluster:
    return GleitzeitCluster(hub_url=suite.hub_url, api_key=suite.key, auto_start=False)


async def served(cluster: GleitzeitCluster, name: str, component_ids: List[str]) -> None:
    """Waits until the hub lists ``name`` for every component, then a moment for the
    engine to lease with the new routing key."""
    deadline = time.monotonic() + 20
    while True:
        have = {f["component_id"] for f in await cluster.list_functions() if f["name"] == name}
        if set(component_ids) <= have:
            break
        assert time.monotonic() < deadline, "function %s never declared by %s" % (name, component_ids)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)


def service(suite, name: str = "SDK Tests", **kw) -> TaskService:
    kw.setdefault("functions", FUNCTIONS)
    return TaskService(service_name=name, hub_url=suite.hub_url, api_key=suite.key, **kw)


# ---------------------------------------------------------------------- unit: declaration


def test_decorator_forms_keep_functions_callable():
    @gleitzeit_task
    def plain(x: int) -> int:
        return x + 1

    @gleitzeit_task()
    async def empty(x: str) -> str:
        return x

    @gleitzeit_task(name="renamed", category="c", timeout=2, description="d", method="demo/renamed")
    def options(n: int, flag: bool = False) -> dict:
        """ignored: description given"""
        return {"n": n}

    try:
        assert plain(1) == 2 and asyncio.run(empty("e")) == "e" and options(3) == {"n": 3}
        info = get_function("renamed")
        assert info is not None and info.func is options and info.method == "demo/renamed"
        assert info.timeout == 2.0 and info.category == "c" and info.description == "d"
        assert get_function("empty").is_async and not get_function("plain").is_async
        assert info.parameters == {
            "type": "object",
            "properties": {"n": {"type": "integer"}, "flag": {"type": "boolean", "default": False}},
            "required": ["n"],
            "additionalProperties": False,
        }
        assert info.method_declaration()["params_schema"] == info.parameters
        decl = get_function("plain").declaration("S")
        assert decl["signature"] == "plain(x: int) -> int" and decl["returns"] == {"type": "integer"}
        with pytest.raises(ValueError):
            gleitzeit_task(name="bad name!")(lambda: None)
    finally:
        for n in ("plain", "empty", "renamed"):
            unregister(n)


def test_capabilities_and_metadata_follow_the_protocol():
    svc = TaskService(service_name="Text Tools", hub_url="http://127.0.0.1:9", api_key="x", functions=FUNCTIONS[:2])
    svc.functions = FUNCTIONS[:2]
    svc._by_method = {"text/shout": FUNCTIONS[1]}
    assert svc.capabilities() == [
        "python/function",
        "python/function#add",
        "python/function#add@Text Tools",
        "python/function#shout",
        "python/function#shout@Text Tools",
        "text/shout",
    ]
    meta = svc.metadata()
    assert meta["service_name"] == "Text Tools"
    assert [f["name"] for f in meta["functions"]] == ["add", "shout"]
    assert meta["methods"] == [{"name": "text/shout", "description": "Upper-cases a text.", "params_schema": FUNCTIONS[1].parameters}]
    assert meta["sdk"].startswith("gleitzeit-python ")
    assert svc.component_id.startswith("task-service-") and len(svc.component_id) == len("task-service-") + 8


# ---------------------------------------------------------------------- against the suite


def test_sync_async_and_open_method_functions_run_in_a_workflow(suite):
    progress = []

    async def main():
        async with cluster_of(suite) as cluster, service(suite, capacity=3) as svc:
            cluster.on("task_progress", lambda e: progress.append((e["task_id"], e["text"])))
            await served(cluster, "add", [svc.component_id])
            functions = [f for f in await cluster.list_functions() if f["component_id"] == svc.component_id]
            wf = Workflow("functions")
            first = wf.add_python_task("First Sum", function_name="add", args=[2], kwargs={"b": 3})
            wf.add_python_task(
                "Second Sum",
                function_name="add",
                kwargs={"a": "{{First Sum.result}}", "b": 10},
                dependencies=["First Sum"],
                service_name="SDK Tests",
            )
            wf.add_external_task(
                "Loud",
                service_name="SDK Tests",
                external_parameters={"function_name": "shout", "text": "hi", "times": 2},
            )
            wf.add_task("Open", "text/shout", {"text": "open"}, dependencies=[first])
            wf.add_python_task("Where", function_name="context_of")
            wf_id = await cluster.submit_workflow(wf)
            results = await cluster.wait(wf_id, timeout=60)
            record = await cluster.get_workflow(wf_id)
            deadline = time.monotonic() + 10
            while not progress and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return wf_id, results, functions, record, dict(svc.stats)

    wf_id, results, functions, record, stats = run(main())
    assert results["first-sum"]["result"] == 5 and results["first-sum"]["success"] is True
    assert isinstance(results["first-sum"]["execution_time"], float)
    assert results["second-sum"]["result"] == 15
    assert results["loud"]["result"] == "HI HI"
    assert results["open"]["result"] == "OPEN"
    assert results["where"]["result"] == {"workflow_id": wf_id, "task_id": "where", "attempt": 1}
    assert progress == [("where", "working on where")]
    assert stats["completed"] == 5
    assert {t["provider_id"] for t in record["tasks"]} == {functions[0]["component_id"]}
    names = {f["name"]: f for f in functions}
    assert set(names) == {f.name for f in FUNCTIONS}
    assert names["add"]["parameters"]["required"] == ["a"] and names["add"]["category"] == "math"
    assert names["shout"]["is_async"] is True and names["sleepy"]["timeout"] == 0.5


def test_bad_arguments_fail_with_gz7002_naming_the_path(suite):
    async def main():
        async with cluster_of(suite) as cluster, service(suite) as svc:
            await served(cluster, "add", [svc.component_id])
            outcomes = {}
            for name, args, kwargs in [
                ("kw", None, {"a": "x"}),
                ("pos", ["y"], None),
                ("many", [1, 2, 3], None),
                ("missing", None, {"b": 1}),
                ("extra", None, {"a": 1, "c": 2}),
            ]:
                wf = Workflow("bad-%s" % name)
                wf.add_python_task("t", function_name="add", args=args, kwargs=kwargs)
                wf_id = await cluster.submit_workflow(wf)
                with pytest.raises(GleitzeitError):
                    await cluster.wait(wf_id, timeout=60)
                outcomes[name] = (await cluster.get_task(wf_id, "t"))
            return outcomes

    outcomes = run(main())
    errors = {k: v["error"] for k, v in outcomes.items()}
    assert all(e["code"] == "GZ7002" and e["retryable"] is False for e in errors.values()), errors
    assert errors["kw"]["message"] == 'kwargs.a: "x" is not of type "integer"'
    assert errors["pos"]["message"] == 'args[0]: "y" is not of type "integer"'
    assert errors["many"]["message"].startswith("args: 3 positional arguments given")
    assert errors["missing"]["message"] == 'kwargs: "a" is a required property'
    assert errors["extra"]["message"] == 'kwargs: additional property "c" is not allowed'
    assert all(v["attempts"] == 1 for v in outcomes.values())


def test_exceptions_timeouts_and_non_json_results(suite):
    async def main():
        async with cluster_of(suite) as cluster, service(suite) as svc:
            await served(cluster, "boom", [svc.component_id])
            wf = Workflow("errors", on_failure="continue")
            wf.add_python_task("raises", function_name="boom", kwargs={"message": "bad"})
            wf.add_python_task("too slow", function_name="sleepy", kwargs={"seconds": 5})
            wf.add_python_task("task timeout", function_name="wait_for_cancel", kwargs={"marker": "/nonexistent/x"}, timeout=0.5)
            wf.add_python_task("object", function_name="not_json")
            wf.add_python_task("elsewhere", function_name="add", kwargs={"a": 1}, service_name="SDK Tests")
            wf_id = await cluster.submit_workflow(wf)
            record = await cluster.wait(wf_id, timeout=60, raise_on_failure=False)
            tasks = {t["task_id"]: t for t in (await cluster.get_workflow(wf_id))["tasks"]}
            return record, tasks

    record, tasks = run(main())
    raised = tasks["raises"]["error"]
    assert raised["code"] == "GZ2025"
    assert raised["details"]["exception_type"] == "ValueError"
    assert "boom: bad" in raised["details"]["traceback"] and "Traceback" in raised["details"]["traceback"]
    assert tasks["too-slow"]["error"]["code"] == "GZ2002" and tasks["too-slow"]["error"]["retryable"] is True
    # the marker folder does not exist: the function raises before its sleep, so GZ2025
    assert tasks["task-timeout"]["error"]["code"] == "GZ2025"
    assert tasks["object"]["error"]["code"] == "GZ2025" and "not JSON" in tasks["object"]["error"]["message"]
    assert tasks["elsewhere"]["status"] == "completed"
    assert record["status"] == "completed"  # on_failure: continue


def test_the_task_timeout_applies_to_async_functions(suite, workdir: Path):
    marker = str(workdir / "t")

    async def main():
        async with cluster_of(suite) as cluster, service(suite) as svc:
            await served(cluster, "wait_for_cancel", [svc.component_id])
            wf = Workflow("timeout")
            wf.add_python_task("t", function_name="wait_for_cancel", kwargs={"marker": marker}, timeout=0.5)
            wf_id = await cluster.submit_workflow(wf)
            with pytest.raises(GleitzeitError):
                await cluster.wait(wf_id, timeout=60)
            return await cluster.get_task(wf_id, "t")

    task = run(main())
    assert task["error"]["code"] == "GZ2002"
    assert Path(marker + ".cancelled").read_text() == "CancelledError"


def test_cancel_reaches_a_running_async_function(suite, workdir: Path):
    marker = str(workdir / "c")

    async def main():
        async with cluster_of(suite) as cluster, service(suite) as svc:
            await served(cluster, "wait_for_cancel", [svc.component_id])
            wf = Workflow("cancel-async")
            wf.add_python_task("t", function_name="wait_for_cancel", kwargs={"marker": marker})
            wf_id = await cluster.submit_workflow(wf)
            deadline = time.monotonic() + 30
            while not os.path.exists(marker + ".started"):
                assert time.monotonic() < deadline, "the function never started"
                await asyncio.sleep(0.02)
            reply = await cluster.cancel(wf_id)
            while not os.path.exists(marker + ".cancelled"):
                assert time.monotonic() < deadline, "the function never saw the cancel"
                await asyncio.sleep(0.02)
            with pytest.raises(GleitzeitError) as info:
                await cluster.wait(wf_id, timeout=30)
            await asyncio.sleep(0.3)
            return reply, info.value, dict(svc.stats), svc.held_tasks

    reply, err, stats, held = run(main())
    assert reply["cancelled"] is True and err.code == "GZ2006"
    assert Path(marker + ".cancelled").read_text() == "CancelledError"
    assert stats["cancelled"] == 1 and stats["completed"] == 0 and held == 0


def test_two_services_declaring_a_function_share_its_load(suite):
    async def main():
        one = service(suite, "Shared", functions=[TaskFunction(whoami)], capacity=2)
        two = service(suite, "Shared", functions=[TaskFunction(whoami)], capacity=2)
        async with cluster_of(suite) as cluster, one, two:
            await served(cluster, "whoami", [one.component_id, two.component_id])
            wf = Workflow("shared")
            for i in range(20):
                wf.add_python_task("call %d" % i, function_name="whoami", kwargs={"i": i})
            results = await cluster.run(wf, timeout=90)
            return results, one.component_id, two.component_id

    results, a, b = run(main())
    by = {}
    for r in results.values():
        by.setdefault(r["result"]["provider"], []).append(r["result"]["i"])
    assert sorted(i for v in by.values() for i in v) == list(range(20))
    assert set(by) == {a, b}, by
    assert all(len(v) >= 3 for v in by.values()), by


def whoami(i: int) -> dict:
    time.sleep(0.2)
    return {"i": i, "provider": current_task().provider_id}


def test_a_killed_service_s_task_runs_again_on_another(suite, workdir: Path):
    first = suite.python("svc-kill-a", "service_app.py", "Killable", "task-service-kill0001", "2")
    second = None
    try:
        async def main():
            nonlocal second
            async with cluster_of(suite) as cluster:
                await served(cluster, "slow_once", ["task-service-kill0001"])
                wf = Workflow("killed")
                wf.add_python_task("Once", function_name="slow_once", kwargs={"marker_dir": str(workdir)})
                wf_id = await cluster.submit_workflow(wf)
                deadline = time.monotonic() + 30
                while not list(workdir.glob("attempt-1-*")):
                    assert time.monotonic() < deadline, "the first attempt never started"
                    await asyncio.sleep(0.05)
                second = suite.python("svc-kill-b", "service_app.py", "Killable", "task-service-kill0002", "2")
                await served(cluster, "slow_once", ["task-service-kill0002"])
                first.kill()  # SIGKILL mid-task
                results = await cluster.wait(wf_id, timeout=60)
                task = await cluster.get_task(wf_id, "once")
                events = [e async for e in cluster.events(wf_id)]
                return results, task, events

        results, task, events = run(main(), timeout=120)
    finally:
        first.kill()
        if second is not None:
            second.terminate()
    assert results["once"]["result"]["provider"] == "task-service-kill0002"
    # attempt 2, or later when the engine had sent it to the dying service again first
    assert task["provider_id"] == "task-service-kill0002" and task["attempts"] >= 2
    assert len([e for e in events if e["event"] == "task_completed"]) == 1
    assert len(list(workdir.glob("attempt-1-*"))) == 1
    assert len(list(workdir.glob("attempt-*-%d" % results["once"]["result"]["pid"]))) == 1


def test_run_task_service_stops_cleanly_on_sigterm_and_gives_back_held_tasks(suite, workdir: Path):
    import signal

    proc = suite.python("svc-term", "service_app.py", "Terminated", "task-service-term0001", "1")
    try:
        async def main():
            async with cluster_of(suite) as cluster:
                await served(cluster, "slow_once", ["task-service-term0001"])
                wf = Workflow("drained")
                wf.add_python_task("Once", function_name="slow_once", kwargs={"marker_dir": str(workdir)})
                wf_id = await cluster.submit_workflow(wf)
                deadline = time.monotonic() + 30
                while not list(workdir.glob("attempt-1-*")):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                proc.signal(signal.SIGTERM)
                code = await asyncio.get_running_loop().run_in_executor(None, proc.popen.wait, 20)
                components = await cluster.list_components()
                # the task was given back (GZ1031): it waits for a provider again, unharmed
                await asyncio.sleep(0.5)
                task = await cluster.get_task(wf_id, "once")
                await cluster.cancel(wf_id)
                return code, components, task

        code, components, task = run(main(), timeout=90)
    finally:
        proc.kill()
    assert code == 0
    assert "task-service-term0001" not in {c["component_id"] for c in components}
    # given back with GZ1031: queued again, not failed (a give-back uses up no retry)
    assert task["status"] == "queued" and task["error"]["code"] == "GZ1031", task


def test_the_seed_basic_workflow_with_builtin_functions_and_an_llm(suite, monkeypatch, capsys):
    """The original README's "Basic Workflow" (tests/seed_basic_workflow.py), unchanged but
    for its import line, with the built-in functions and an LLM task against llm-sim."""
    if not [f for f in run(_functions(suite)) if f["name"] == "fibonacci"]:
        pytest.skip("python-provider does not declare the built-in function fibonacci yet")
    import seed_basic_workflow

    monkeypatch.setenv("GLEITZEIT_HUB_URL", suite.hub_url)
    monkeypatch.setenv("GLEITZEIT_API_KEY", suite.key)
    run(seed_basic_workflow.main(), timeout=90)
    out = capsys.readouterr().out
    assert "✅ Workflow completed!" in out, out
    assert "Progress: 3/3" in out
    results = ast.literal_eval(out.split("Results: ", 1)[1].strip())
    assert results["generate-dataset"]["result"] == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    assert results["analyze-numbers"]["result"]["count"] == 10
    summary = results["generate-summary"]["response"]
    assert summary.startswith("echo: Create a summary of this analysis: {")


async def _functions(suite):
    async with cluster_of(suite) as cluster:
        return await cluster.list_functions()


def test_a_service_whose_socket_drops_reconnects_and_the_workflow_completes(suite):
    async def main():
        svc = service(suite, "Reconnecting", functions=[TaskFunction(whoami)], capacity=2)
        async with cluster_of(suite) as cluster, svc:
            await served(cluster, "whoami", [svc.component_id])
            wf = Workflow("service-reconnect")
            for i in range(8):
                wf.add_python_task("call %d" % i, function_name="whoami", kwargs={"i": i}, service_name="Reconnecting")
            wf_id = await cluster.submit_workflow(wf)
            deadline = time.monotonic() + 30
            while svc.stats["completed"] < 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await svc.connection.sio.disconnect()
            results = await cluster.wait(wf_id, timeout=60)
            return results, svc.connection.reconnects, svc.connection.connected

    results, reconnects, connected = run(main())
    assert sorted(r["result"]["i"] for r in results.values()) == list(range(8))
    assert reconnects >= 1 and connected


def test_keys_and_roles(suite):
    """A SERVICE key limited to task-service serves functions; a USER key submits but may
    not register as a component (the refusal raises at start)."""

    def key(user: str, role: str, *extra: str) -> str:
        made = suite.gz("auth", "user", "create", user, "--role", role)
        assert made.returncode == 0, made.stderr
        out = suite.gz("auth", "key", "create", user + "-key", "--user", user, "--json", *extra)
        assert out.returncode == 0, out.stderr
        import json

        return json.loads(out.stdout)["api_key"]

    service_key = key("svc-box", "service", "--component-types", "task-service")
    user_key = key("alice", "user")

    async def main():
        svc = TaskService(
            service_name="Service Keyed", hub_url=suite.hub_url, api_key=service_key, functions=[TaskFunction(add)]
        )
        refused = TaskService(service_name="User Keyed", hub_url=suite.hub_url, api_key=user_key, functions=[TaskFunction(add)])
        with pytest.raises(GleitzeitError) as info:
            await refused.start(retry_forever=False)
        async with GleitzeitCluster(hub_url=suite.hub_url, api_key=user_key, auto_start=False) as cluster, svc:
            await served(cluster, "add", [svc.component_id])
            wf = Workflow("keys")
            wf.add_python_task("t", function_name="add", args=[40, 2], service_name="Service Keyed")
            wf_id = await cluster.submit_workflow(wf)
            events = [e async for e in cluster.events(wf_id)]
            return await cluster.wait(wf_id, timeout=60), events, info.value

    results, events, refusal = run(main())
    assert results["t"]["result"] == 42
    # a USER joins the workflow's room after submitting, and catches up from the first event
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "workflow_submitted" and events[-1]["event"] == "workflow_completed"
    assert refusal.code == "GZ4003"


def test_the_seed_batch_processing_example(suite, monkeypatch, capsys):
    """The original README's "Batch Processing" (tests/seed_batch_processing.py)."""
    names = {f["name"] for f in run(_functions(suite))}
    if not {"count_words", "extract_keywords"} <= names:
        pytest.skip("python-provider does not declare count_words and extract_keywords yet")
    import seed_batch_processing

    monkeypatch.setenv("GLEITZEIT_HUB_URL", suite.hub_url)
    monkeypatch.setenv("GLEITZEIT_API_KEY", suite.key)
    run(seed_batch_processing.batch_text_analysis(), timeout=90)
    out = capsys.readouterr().out
    assert out.count("✅ Completed: ") == 7, out
    assert "✅ Completed: Generate Report -> {" in out
    lines = {l.split(":", 1)[0].strip(): l for l in out.split("Batch Results:", 1)[1].strip().splitlines()}
    assert set(lines) == {"analyze-text-1", "analyze-text-2", "analyze-text-3", "extract-keywords-1",
                          "extract-keywords-2", "extract-keywords-3", "generate-report"}
    assert "'result': 5" in lines["analyze-text-1"], lines["analyze-text-1"]
    assert "'result': ['artificial', 'intelligence', 'transforming']" in lines["extract-keywords-1"]
    assert "echo: Create a report from these analyses:" in lines["generate-report"]
