"""Tests of worker.py's line protocol as the pool uses it when it sends a job behind a
running one (pool.rs, "pipeline"): jobs queued in the pipe run in order, a skip that reaches
the worker before a waiting job starts stops that job, and a skip that comes too late (or
for a job that already ran) changes nothing.

Run from the repository root: python3 -m pytest services/python-provider/tests/test_worker_protocol.py -q
"""

import json
import pathlib
import subprocess
import sys

import pytest

WORKER = pathlib.Path(__file__).resolve().parents[1] / "src" / "worker.py"


@pytest.fixture
def worker():
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER.read_text(), json.dumps({"max_output": 1 << 20})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert json.loads(proc.stdout.readline())["status"] == "ready"
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def send(proc, *lines):
    for line in lines:
        proc.stdin.write((json.dumps(line) + "\n").encode())
    proc.stdin.flush()


def reply(proc):
    line = proc.stdout.readline()
    assert line, "the worker closed its pipe"
    return json.loads(line)


def test_jobs_waiting_in_the_pipe_run_in_order(worker):
    send(worker, *({"seq": n, "code": "result = %d" % (n * 10)} for n in range(1, 6)))
    got = [reply(worker) for _ in range(5)]
    assert [(r["status"], r["seq"], r["result"]) for r in got] == [
        ("ok", n, n * 10) for n in range(1, 6)
    ]


def test_a_skip_stops_a_waiting_job_and_the_next_one_runs(worker, tmp_path):
    marker = tmp_path / "ran"
    send(
        worker,
        {"seq": 1, "code": "import time\ntime.sleep(0.3)\nresult = 'first'"},
        {"seq": 2, "code": "open(context['m'], 'w').write('x')", "context": {"m": str(marker)}},
        {"skip": 2},
        {"seq": 3, "code": "result = 'third'"},
    )
    assert reply(worker)["result"] == "first"
    assert reply(worker) == {"status": "skipped", "seq": 2}
    assert reply(worker)["result"] == "third"
    assert not marker.exists(), "the skipped job never ran"


def test_a_late_or_stray_skip_changes_nothing(worker):
    send(worker, {"seq": 1, "code": "result = 1"})
    assert reply(worker)["result"] == 1
    # Job 1 has run: its skip is stale; a skip for an unknown job is ignored.
    send(worker, {"skip": 1}, {"skip": "x"}, {"seq": 2, "code": "result = 2"})
    second = reply(worker)
    assert (second["status"], second["seq"], second["result"]) == ("ok", 2, 2)
    send(worker, {"seq": 3, "code": "result = 3"})
    assert reply(worker)["result"] == 3


def test_a_request_of_many_reads_arrives_whole(worker):
    big = "x" * (3 << 20)  # 3 MiB: dozens of pipe reads
    send(
        worker,
        {"seq": 1, "code": "result = len(context['big'])", "context": {"big": big}},
        {"seq": 2, "code": "result = 2"},
    )
    assert reply(worker)["result"] == len(big)
    assert reply(worker)["result"] == 2


SOFT_CPU = "import resource\nresult = resource.getrlimit(resource.RLIMIT_CPU)[0]"


def test_each_job_runs_with_its_own_cpu_budget(worker):
    # A budget of 5 s: the soft limit is what the worker used so far (well under a
    # second here) plus 5; a job without one runs with the limit lifted.
    send(worker, {"seq": 1, "code": SOFT_CPU, "cpu": 5})
    assert reply(worker)["result"] == 5
    send(worker, {"seq": 2, "code": SOFT_CPU})
    assert reply(worker)["result"] == -1, "no budget: RLIM_INFINITY"
    send(worker, {"seq": 3, "code": SOFT_CPU, "cpu": 7}, {"seq": 4, "code": SOFT_CPU, "cpu": 7})
    assert [reply(worker)["result"] for _ in range(2)] == [7, 7]
    # A job that changes the limit itself does not change the next job's.
    tamper = "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1, resource.RLIM_INFINITY))"
    send(worker, {"seq": 5, "code": tamper, "cpu": 7}, {"seq": 6, "code": SOFT_CPU, "cpu": 7})
    assert reply(worker)["status"] == "ok"
    assert reply(worker)["result"] == 7


def test_a_job_past_its_cpu_budget_is_stopped(worker):
    send(worker, {"seq": 1, "code": "while True:\n    pass", "cpu": 1})
    assert worker.stdout.readline() == b"", "the worker ended without a reply"
    assert worker.wait(timeout=30) == -24, "SIGXCPU"


def test_results_json_has_no_type_for_are_still_written(worker):
    # The reply encoder is made once and keeps no record of the containers it is in: a
    # cycle, NaN, a set and odd keys go through the slow path, and the worker goes on.
    send(
        worker,
        {"seq": 1, "code": "loop = [1]\nloop.append(loop)\nresult = loop"},
        {"seq": 2, "code": "result = {'nan': float('nan'), 's': {3}, 'k': {(1, 2): 'tuple key'}}"},
        {"seq": 3, "code": "result = 'caf\\u00e9 \\u2603'"},
    )
    assert reply(worker)["result"] == [1, "<circular reference>"]
    second = reply(worker)["result"]
    assert second == {"nan": "nan", "s": [3], "k": {"(1, 2)": "tuple key"}}
    assert reply(worker)["result"] == "caf\u00e9 \u2603"


def test_a_request_with_trailing_text_is_refused_and_the_next_one_runs(worker):
    worker.stdin.write(b'{"seq": 1, "code": "result = 1"} trailing\n')
    send(worker, {"seq": 2, "code": "result = 2"})
    first = reply(worker)
    assert (first["status"], first["kind"]) == ("error", "internal")
    assert reply(worker)["result"] == 2
