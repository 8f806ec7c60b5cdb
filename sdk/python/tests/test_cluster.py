"""GleitzeitCluster against the real suite: submit, wait, events, callbacks, reconnects,
cancel, list, keys, and the sync facade."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from sdk_support import run
from gleitzeit import ITEM, ITEM_INDEX, GleitzeitCluster, GleitzeitError, Workflow
from gleitzeit.cluster import FINAL_EVENTS
from gleitzeit.sync import Cluster


def cluster_of(suite, **kw) -> GleitzeitCluster:
    return GleitzeitCluster(hub_url=suite.hub_url, api_key=suite.key, auto_start=False, **kw)


def chain(name: str = "chain", n: int = 3, sleep: float = 0.0) -> Workflow:
    """n python/execute tasks, each adding one to the one before."""
    wf = Workflow(name)
    prev = None
    for i in range(n):
        if prev is None:
            code = "import time\ntime.sleep(%s)\nresult = 1" % sleep
            prev = wf.add_task("step %d" % i, "python/execute", {"code": code})
        else:
            code = "import time\ntime.sleep(%s)\nresult = context['x'] + 1" % sleep
            prev = wf.add_task(
                "step %d" % i, "python/execute", {"code": code, "context": {"x": prev.ref("result")}}
            )
    return wf


def test_submit_a_yaml_file_a_dict_and_a_workflow(suite, workdir: Path):
    (workdir / "scripts").mkdir()
    (workdir / "scripts" / "double.py").write_text("result = context['n'] * 2\n")
    path = workdir / "flow.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: from-file
            tasks:
              - id: seed
                method: python/execute
                parameters: { code: "result = 21" }
              - id: double
                method: python/execute
                parameters:
                  file: scripts/double.py
                  context: { n: "${seed.result}" }
            """
        )
    )
    as_dict = {
        "name": "from-dict",
        "tasks": [
            {"method": "python/execute", "params": {"code": "result = 'a'"}},
            {"method": "python/execute", "params": {"code": "result = context['x'] + 'b'", "context": {"x": "${task-1.result}"}}},
        ],
    }

    async def main():
        async with cluster_of(suite) as cluster:
            r_file = await cluster.wait(await cluster.submit_workflow(str(path)), timeout=60)
            r_dict = await cluster.wait(await cluster.submit_workflow(as_dict), timeout=60)
            r_wf = await cluster.run(chain(), timeout=60)
            return r_file, r_dict, r_wf

    r_file, r_dict, r_wf = run(main())
    assert r_file["seed"]["result"] == 21
    assert r_file["double"]["result"] == 42  # the script path resolved against the file's folder
    assert r_dict["task-2"]["result"] == "ab"
    assert [r_wf["step-%d" % i]["result"] for i in range(3)] == [1, 2, 3]


def test_a_fan_out_built_in_python_makes_a_task_per_item_and_joins_them(suite):
    wf = Workflow("fan-out")
    words = wf.add_task("words", "python/execute", {"code": "result = ['alpha', 'beta', 'gamma']"})
    upper = wf.add_task(
        "upper",
        "python/execute",
        {"code": "result = '%d:' % context['i'] + context['w'].upper()", "context": {"w": ITEM, "i": ITEM_INDEX}},
        batch={"from": words, "max_items": 10},
    )
    report = wf.add_task(
        "report",
        "python/execute",
        {"code": "result = len(context['o'])", "context": {"o": upper.ref("results")}},
        dependencies=[upper],
        tolerate_failures=True,
    )
    doc = wf.to_dict()
    assert doc["tasks"][1]["batch"] == {"from": "${words.result}", "max_items": 10}
    assert doc["tasks"][2]["tolerate_failures"] is True
    assert Workflow.from_dict(doc).to_dict() == doc

    async def main():
        async with cluster_of(suite) as cluster:
            return await cluster.run(wf, timeout=60)

    results = run(main())
    assert results["upper"]["result"] == ["0:ALPHA", "1:BETA", "2:GAMMA"]
    assert results["upper-00002"]["result"] == "1:BETA"
    assert results[report.id]["result"] == 3


def test_callbacks_sync_and_async_and_events_in_seq_order(suite):
    seen_sync = []
    seen_async = []
    seen_all = []
    task_names = []

    async def main():
        async with cluster_of(suite) as cluster:
            done = asyncio.Event()

            def on_progress(event):
                seen_sync.append(("progress", event["completed_tasks"], event["total_tasks"]))

            async def on_completed(event):
                await asyncio.sleep(0)
                seen_async.append(event["task_results"])
                done.set()

            cluster.on("workflow_progress", on_progress)
            cluster.on("workflow_completed", on_completed)
            cluster.on("task_completed", lambda e: task_names.append((e["task_name"], e["result"]["result"])))
            cluster.on("*", lambda event, payload: seen_all.append((event, payload["seq"])))
            wf_id = await cluster.submit_workflow(chain("callbacks", 3))
            events = [e async for e in cluster.events(wf_id)]
            await asyncio.wait_for(done.wait(), 30)
            # a second iterator started late replays from the first event
            again = [e async for e in cluster.events(wf_id)]
            return wf_id, events, again

    wf_id, events, again = run(main())
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[0] == 1 and seqs == list(range(1, len(seqs) + 1))
    assert events[0]["event"] == "workflow_submitted"
    assert events[-1]["event"] == "workflow_completed"
    assert [e["seq"] for e in again] == seqs
    assert all(e["payload"]["workflow_id"] == wf_id for e in events)
    assert seen_async and seen_async[0]["step-2"]["result"] == 3
    assert seen_sync and seen_sync[-1][1] == 3
    assert sorted(task_names) == [("step 0", 1), ("step 1", 2), ("step 2", 3)]
    # "*" saw every event once, in order
    assert [s for _, s in seen_all] == seqs


def test_a_wide_workflow_delivers_every_batched_event_once_in_seq_order(suite):
    """The queue-manager sends events in ``event_batch`` envelopes (many per envelope for a
    wide workflow); callbacks and ``events()`` still get each one once, in ``seq`` order."""
    n = 60
    completed = []
    envelopes = []

    async def main():
        wf = Workflow("wide")
        for i in range(n):
            wf.add_task("t%d" % i, "python/execute", {"code": "result = %d" % i})
        async with cluster_of(suite) as cluster:
            cluster._conn.on("event_batch", lambda env: envelopes.append(len(env["payload"]["events"])))
            cluster.on("task_completed", lambda e: completed.append(e["result"]["result"]))
            wf_id = await cluster.submit_workflow(wf)
            events = [e async for e in cluster.events(wf_id)]
            await cluster.wait(wf_id, timeout=60)
            await asyncio.sleep(0.2)  # callbacks run from their own queue
            return events

    events = run(main())
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert sorted(completed) == list(range(n))
    assert events[-1]["event"] == "workflow_completed"
    assert sum(1 for e in events if e["event"] == "task_started") == n
    assert envelopes and max(envelopes) > 1, envelopes


def test_events_miss_nothing_across_a_forced_reconnect(suite):
    async def main():
        async with cluster_of(suite) as cluster:
            wf_id = await cluster.submit_workflow(chain("reconnect", 6, sleep=0.4))
            got = []
            dropped = False
            async for event in cluster.events(wf_id):
                got.append(event)
                if event["event"] == "task_completed" and not dropped:
                    dropped = True
                    # lose the socket: the connection reconnects, re-joins and catches up
                    await cluster._conn.sio.disconnect()
            record = await cluster.get_workflow(wf_id)
            return got, cluster._conn.reconnects, record

    got, reconnects, record = run(main())
    assert reconnects >= 1
    seqs = [e["seq"] for e in got]
    assert seqs == list(range(1, len(seqs) + 1)), seqs  # nothing missed, nothing twice
    assert got[-1]["event"] == "workflow_completed"
    completed = [e["payload"]["task_id"] for e in got if e["event"] == "task_completed"]
    assert sorted(completed) == sorted(t["task_id"] for t in record["tasks"])


def test_wait_after_reconnect_and_watch_of_a_finished_workflow(suite):
    async def main():
        async with cluster_of(suite) as cluster:
            wf_id = await cluster.submit_workflow(chain("watch", 2))
            await cluster._conn.sio.disconnect()
            results = await cluster.wait(wf_id, timeout=60)
        async with cluster_of(suite) as other:
            # a workflow another client submitted, finished already: replayed from its start
            events = [e async for e in other.events(wf_id)]
            again = await other.wait(wf_id, timeout=10)
        return results, events, again

    results, events, again = run(main())
    assert results["step-1"]["result"] == 2
    assert events[0]["seq"] == 1 and events[-1]["event"] == "workflow_completed"
    assert again == results


def test_failure_raises_the_workflows_error(suite):
    wf = Workflow("fails")
    wf.add_task("bad", "python/execute", {"code": "raise ValueError('nope')"})
    wf.add_task("after", "python/execute", {"code": "result = 1"}, dependencies=["bad"])

    async def main():
        async with cluster_of(suite) as cluster:
            wf_id = await cluster.submit_workflow(wf)
            with pytest.raises(GleitzeitError) as info:
                await cluster.wait(wf_id, timeout=60)
            record = await cluster.wait(wf_id, raise_on_failure=False)
            task = await cluster.get_task(wf_id, "bad")
            return info.value, record, task

    err, record, task = run(main())
    assert err.code == "GZ2001"
    assert "bad" in err.message
    assert err.workflow_id == record["id"]
    assert record["status"] == "failed" and record["counts"]["skipped"] == 1
    assert task["status"] == "failed" and task["error"]["code"] == "GZ2025"
    assert "ValueError" in task["error"]["details"]["traceback"]


def test_cancel_a_running_workflow(suite):
    wf = Workflow("to-cancel")
    wf.add_task("long", "python/execute", {"code": "import time\ntime.sleep(30)\nresult = 1"})

    async def main():
        async with cluster_of(suite) as cluster:
            wf_id = await cluster.submit_workflow(wf)
            async for event in cluster.events(wf_id):
                if event["event"] == "task_started":
                    break
            reply = await cluster.cancel(wf_id)
            with pytest.raises(GleitzeitError) as info:
                await cluster.wait(wf_id, timeout=30)
            final = [e async for e in cluster.events(wf_id)][-1]
            return reply, info.value, final

    reply, err, final = run(main())
    assert reply["cancelled"] is True and reply["status"] == "cancelled"
    assert err.code == "GZ2006"
    assert final["event"] == "workflow_cancelled"


def test_list_and_get(suite):
    async def main():
        async with cluster_of(suite) as cluster:
            wf_id = await cluster.submit_workflow(chain("listed", 2))
            await cluster.wait(wf_id, timeout=60)
            listed = await cluster.list_workflows(limit=50)
            completed = await cluster.list_workflows(limit=50, status="completed")
            got = await cluster.get_workflow(wf_id)
            paged = await cluster.get_workflow(wf_id, page_size=1)
            none_failed = await cluster.get_workflow(wf_id, status="failed")
            summary = await cluster.get_workflow(wf_id, summary=True)
            task = await cluster.get_task(wf_id, "step-1")
            with pytest.raises(GleitzeitError) as missing:
                await cluster.get_workflow("wf-does-not-exist")
            with pytest.raises(GleitzeitError) as bad_status:
                await cluster.list_workflows(status="sleeping")
            components = await cluster.list_components()
            return wf_id, listed, completed, got, paged, none_failed, summary, task, missing.value, bad_status.value, components

    wf_id, listed, completed, got, paged, none_failed, summary, task, missing, bad_status, components = run(main())
    assert wf_id in [w["id"] for w in listed]
    assert all(w["status"] == "completed" for w in completed)
    assert got["workflow"]["name"] == "listed" and got["counts"]["completed"] == 2
    assert [t["task_id"] for t in got["tasks"]] == ["step-0", "step-1"]
    # Read one task per page: the same document, without a page's next_offset.
    assert paged == got and "next_offset" not in paged
    assert none_failed["tasks"] == [] and none_failed["counts"]["completed"] == 2
    assert summary["tasks"] == []
    assert task["name"] == "step 1" and task["result"]["result"] == 2
    assert missing.code == "GZ3020"
    assert bad_status.code == "GZ7001"
    assert {"qm-1", "ee-1"} <= {c["component_id"] for c in components}


def test_a_wrong_api_key_is_refused_with_gz4001(suite):
    async def main():
        cluster = GleitzeitCluster(hub_url=suite.hub_url, api_key="gzt_000000000000_" + "0" * 64, auto_start=False)
        with pytest.raises(GleitzeitError) as info:
            await cluster.start()
        return info.value

    err = run(main())
    assert err.code == "GZ4001"
    assert str(err).startswith("GZ4001: ")
    assert "0" * 64 not in str(err)


def test_an_unreachable_hub_is_gz1010(suite):
    async def main():
        cluster = GleitzeitCluster(hub_url="http://127.0.0.1:9", api_key=suite.key, auto_start=False, connect_timeout=1)
        with pytest.raises(GleitzeitError) as info:
            await cluster.start()
        return info.value

    assert run(main()).code == "GZ1010"


def test_an_invalid_workflow_is_refused_before_anything_runs(suite):
    wf = Workflow("invalid")
    wf.add_task("a", "python/execute", {"code": "result = 1"}, dependencies=["b"])
    wf.add_task("b", "python/execute", {"code": "result = 1"}, dependencies=["a"])

    async def main():
        async with cluster_of(suite) as cluster:
            with pytest.raises(GleitzeitError) as info:
                await cluster.submit_workflow(wf)
            return info.value, cluster._tracks

    err, tracks = run(main())
    assert err.code == "GZ3003"
    assert not tracks


def test_the_sync_facade(suite):
    seen = []
    with Cluster(hub_url=suite.hub_url, api_key=suite.key, auto_start=False) as cluster:
        cluster.on("workflow_completed", lambda e: seen.append(e["workflow_id"]))
        results = cluster.run(chain("sync", 2), timeout=60)
        wf_id = cluster.submit_workflow(chain("sync-2", 1))
        events = list(cluster.events(wf_id))
        assert cluster.wait(wf_id, timeout=60)["step-0"]["result"] == 1
        assert cluster.get_workflow(wf_id)["workflow"]["status"] == "completed"
        assert wf_id in [w["id"] for w in cluster.list_workflows(limit=10)]
        long_wf = Workflow("sync-cancel")
        long_wf.add_task("long", "python/execute", {"code": "import time\ntime.sleep(30)"})
        long_id = cluster.submit_workflow(long_wf)
        assert cluster.cancel(long_id)["workflow_id"] == long_id
        with pytest.raises(GleitzeitError):
            cluster.wait(long_id, timeout=30)
    assert results["step-1"]["result"] == 2
    assert events[-1]["event"] in FINAL_EVENTS
    assert wf_id in seen


def test_several_hub_urls_skip_one_that_does_not_answer(suite):
    async def main():
        cluster = GleitzeitCluster(
            hub_url="http://127.0.0.1:9,%s" % suite.hub_url, api_key=suite.key, auto_start=False
        )
        async with cluster:
            first = await cluster.run(chain("mesh-1", 1), timeout=60)
            await cluster._conn.sio.disconnect()  # moves on to the next URL (the dead one), then back
            second = await cluster.run(chain("mesh-2", 1), timeout=60)
            return first, second, cluster._conn.url

    first, second, url = run(main())
    assert first["step-0"]["result"] == 1 and second["step-0"]["result"] == 1
    assert url == suite.hub_url


def test_start_local_starts_and_stops_a_suite_with_gz(suite, tmp_path, monkeypatch):
    import os
    import socket
    import subprocess

    from sdk_support import bin_path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "http://127.0.0.1:%d" % port
    data_dir = tmp_path / "local"
    monkeypatch.delenv("GLEITZEIT_API_KEY", raising=False)
    monkeypatch.delenv("GLEITZEIT_HUB_URL", raising=False)
    monkeypatch.setenv("GLEITZEIT_GZ", bin_path("gz"))
    try:
        async def main():
            async with GleitzeitCluster(hub_url=url, start_local=True, data_dir=data_dir) as cluster:
                return await cluster.run(chain("local", 2), timeout=60), cluster._started_local

        results, started = run(main(), timeout=120)
        assert started and results["step-1"]["result"] == 2
        key = (data_dir / "local.key").read_text().strip()

        async def after():
            c = GleitzeitCluster(hub_url=url, api_key=key, auto_start=False, connect_timeout=1)
            with pytest.raises(GleitzeitError) as info:
                await c.start()
            return info.value

        assert run(after()).code == "GZ1010"  # `gz stop` stopped it
    finally:
        key_file = data_dir / "local.key"
        if key_file.exists():  # whatever happened, leave nothing running
            env = dict(os.environ, GLEITZEIT_API_KEY=key_file.read_text().strip(), GLEITZEIT_DATA_DIR=str(data_dir))
            subprocess.run([bin_path("gz"), "stop", "--hub-url", url], env=env, capture_output=True, timeout=60)
