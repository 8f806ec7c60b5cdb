"""Submitting is safe to repeat: every submit carries an idempotency key, a repeated key
answers the first workflow, and a submit waits for a queue-manager that is briefly away."""

from __future__ import annotations

import asyncio
import time

from sdk_support import bin_path, run
from gleitzeit import GleitzeitCluster, GleitzeitError, Workflow


def cluster_of(suite) -> GleitzeitCluster:
    return GleitzeitCluster(hub_url=suite.hub_url, api_key=suite.key, auto_start=False)


def one_task(name: str) -> Workflow:
    wf = Workflow(name)
    wf.add_task("only", "python/execute", {"code": "result = 7"})
    return wf


def test_a_repeated_idempotency_key_answers_the_first_workflow(suite):
    async def main():
        async with cluster_of(suite) as cluster:
            conn = cluster._conn
            spec = one_task("keyed").to_dict()
            payload = {"spec": spec, "workflow_id": "wf-sdk-key-1", "idempotency_key": "sdk-key-0001"}
            first = await conn.request("workflow_submit", payload, "type:queue-manager")
            again = await conn.request(
                "workflow_submit", dict(payload, workflow_id="wf-sdk-key-2"), "type:queue-manager"
            )
            other = dict(payload, workflow_id="wf-sdk-key-3", spec=one_task("other").to_dict())
            try:
                await conn.request("workflow_submit", other, "type:queue-manager")
                conflict = None
            except GleitzeitError as err:
                conflict = err.code
            return first, again, conflict

    first, again, conflict = run(main())
    assert first["workflow_id"] == "wf-sdk-key-1"
    assert again["workflow_id"] == "wf-sdk-key-1"
    assert conflict == "GZ3031"


def test_a_submit_waits_for_a_queue_manager_that_is_briefly_away(suite):
    old = suite.procs["queue-manager"]
    old.kill()
    suite.wait_gone("qm-1")

    async def main():
        async with cluster_of(suite) as cluster:
            started = time.monotonic()
            submit = asyncio.ensure_future(cluster.submit_workflow(one_task("waits")))
            await asyncio.sleep(2.0)
            suite.spawn(
                "queue-manager",
                [
                    bin_path("queue-manager"),
                    "--component-id",
                    "qm-1",
                    "--data-dir",
                    str(suite.data_dir / "qm"),
                    "--provider-grace",
                    "20",
                ],
            )
            wf_id = await submit
            waited = time.monotonic() - started
            results = await cluster.wait(wf_id, timeout=60)
            listed = await cluster.list_workflows(limit=1000)
            return wf_id, waited, results, listed

    wf_id, waited, results, listed = run(main())
    suite.wait_registered(["qm-1"])
    assert waited >= 1.5, waited
    assert results["only"] == 7 or results["only"].get("result") == 7, results
    assert [w["id"] for w in listed].count(wf_id) == 1
    assert sum(1 for w in listed if w["name"] == "waits") == 1
