#!/usr/bin/env python3
"""The Celery + Redis baseline for `gz bench --compare-celery` (issue 16).

Runs the same two workloads as `gz bench` on Celery 5 with a Redis broker and result
backend, on this machine and in this session, so the two can be compared side by side:

* throughput: N independent trivial tasks (one function `return i`, the counterpart of
  Gleitzeit's one source `result = context["i"]` with `i` in each task's context) sent as
  one `group`, timed from the first submit to the last result
  collected (what a user waits for);
* chain hop: a `chain` of M such tasks, each started when the previous one finished,
  timed from the submit to the last result; the time divided by M.

It starts everything it needs and stops it again by PID, even on failure or timeout: a
private `redis-server` on a free 127.0.0.1 port (no persistence, in a temp dir), and a
Celery worker (prefork pool, `--workers` processes) in a process group of its own.

    python3 benches/celery_baseline.py --tasks 10000 --chain 200 [--workers 2] [--json]

Exit codes: 0 measured; 1 the run failed or timed out; 2 Celery or redis-server is missing.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

TASK_NAME = "gz_bench.trivial"


def make_app(broker_url):
    """The Celery app with the one trivial task; the worker and the client both build it."""
    from celery import Celery

    app = Celery("gz_bench", broker=broker_url, backend=broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_expires=600,
    )

    @app.task(name=TASK_NAME)
    def trivial(i):
        return i

    return app, trivial


def run_worker(broker_url, concurrency):
    """The worker side (this script started again by the client side)."""
    app, _ = make_app(broker_url)
    app.worker_main(
        [
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname=gzbench-{os.getpid()}@localhost",
        ]
    )


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_answers(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def tail(path, lines=20):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Deadline(BaseException):
    """The overall time limit was reached (not an `Exception`: nothing may swallow it)."""


def on_alarm(_signum, _frame):
    raise Deadline()


def on_term(signum, _frame):
    # Turn SIGTERM (from `gz bench` giving up) into an exception so `finally` cleans up.
    raise SystemExit(128 + signum)


def stop_process(proc, group, grace=5.0):
    """SIGTERM (to its process group when it has one), then SIGKILL; always reaps."""
    if proc is None or proc.poll() is not None:
        return
    send = (lambda sig: os.killpg(proc.pid, sig)) if group else proc.send_signal
    try:
        send(signal.SIGTERM)
        proc.wait(timeout=grace)
    except (subprocess.TimeoutExpired, OSError):
        pass
    if proc.poll() is None or group:
        # Prefork children may outlive their parent for a moment: kill the whole group.
        try:
            send(signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def measure(args, broker_url, worker, worker_log):
    from celery import __version__ as celery_version
    from celery import chain, group

    app, trivial = make_app(broker_url)
    # Warm up: every worker process has taken a task, so start-up is not timed.
    started = time.monotonic()
    while True:
        if worker.poll() is not None:
            raise RuntimeError(
                f"the Celery worker exited ({worker.returncode}):\n{tail(worker_log)}"
            )
        try:
            warm = group(trivial.s(-1) for _ in range(4 * args.workers)).apply_async()
            warm.get(timeout=5)
            break
        except Exception as e:  # noqa: BLE001 - any failure here means "not ready yet"
            if time.monotonic() - started > 60:
                raise RuntimeError(
                    f"the Celery worker did not answer within 60 s ({e!r}):\n{tail(worker_log)}"
                ) from e

    out = {"celery_version": celery_version, "workers": args.workers}
    if args.tasks > 0:
        t0 = time.perf_counter()
        result = group(trivial.s(i) for i in range(args.tasks)).apply_async()
        values = result.get(timeout=args.timeout)
        seconds = time.perf_counter() - t0
        if values != list(range(args.tasks)):
            raise RuntimeError("the throughput run returned wrong results")
        result.forget()
        out["throughput"] = {
            "tasks": args.tasks,
            "seconds": seconds,
            "tasks_per_s": args.tasks / seconds if seconds > 0 else 0.0,
        }
    if args.chain > 0:
        t0 = time.perf_counter()
        result = chain(trivial.si(i) for i in range(args.chain)).apply_async()
        last = result.get(timeout=args.timeout)
        seconds = time.perf_counter() - t0
        if last != args.chain - 1:
            raise RuntimeError("the chain returned a wrong result")
        out["chain"] = {
            "length": args.chain,
            "seconds": seconds,
            "ms_per_hop": seconds * 1000.0 / args.chain,
        }
    return out


def main():
    parser = argparse.ArgumentParser(
        description="Celery + Redis baseline for gz bench: throughput and chain hop."
    )
    parser.add_argument("--tasks", type=int, default=10_000, help="independent tasks")
    parser.add_argument("--chain", type=int, default=200, help="length of the chain")
    parser.add_argument("--workers", type=int, default=2, help="prefork worker processes")
    parser.add_argument("--timeout", type=float, default=600.0, help="overall limit, s")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--worker-of", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker_of:
        run_worker(args.worker_of, max(1, args.workers))
        return 0

    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as e:
        print(
            f"celery_baseline: Celery with Redis support is not installed ({e}); "
            "install it with: python3 -m pip install 'celery[redis]>=5,<6'",
            file=sys.stderr,
        )
        return 2
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        print(
            "celery_baseline: redis-server is not installed (Debian: apt-get install redis-server)",
            file=sys.stderr,
        )
        return 2
    if args.tasks < 0 or args.chain < 0 or args.workers < 1 or args.timeout <= 0:
        print("celery_baseline: --tasks and --chain must be >= 0, --workers >= 1", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(args.timeout)))
    tmp = tempfile.mkdtemp(prefix="gz-celery-baseline-")
    redis_proc = worker = None
    worker_log = os.path.join(tmp, "worker.log")
    try:
        port = free_port()
        with open(os.path.join(tmp, "redis.log"), "wb") as log:
            redis_proc = subprocess.Popen(
                [
                    redis_server,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", tmp,
                    "--daemonize", "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = time.monotonic()
        while not redis_answers(port):
            if redis_proc.poll() is not None or time.monotonic() - started > 10:
                raise RuntimeError(
                    f"redis-server did not start on port {port}:\n"
                    + tail(os.path.join(tmp, "redis.log"))
                )
            time.sleep(0.05)
        broker_url = f"redis://127.0.0.1:{port}/0"

        with open(worker_log, "wb") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker-of", broker_url,
                    "--workers", str(args.workers),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                start_new_session=True,
            )
        out = measure(args, broker_url, worker, worker_log)
    except Deadline:
        print(
            f"celery_baseline: not finished within {args.timeout:.0f} s\n{tail(worker_log)}",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # noqa: BLE001 - reported, then cleaned up below
        print(f"celery_baseline: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up first
        stop_process(worker, group=True)
        stop_process(redis_proc, group=False)
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(out))
    else:
        print(f"Celery {out['celery_version']} + Redis, {args.workers} prefork worker(s)")
        if "throughput" in out:
            t = out["throughput"]
            print(
                f"throughput  {t['tasks']:>7} tasks in {t['seconds']:8.2f} s  "
                f"{t['tasks_per_s']:9.0f} tasks/s"
            )
        if "chain" in out:
            c = out["chain"]
            print(
                f"chain       {c['length']:>7} tasks in {c['seconds']:8.2f} s  "
                f"{c['ms_per_hop']:9.2f} ms per hop"
            )
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: Celery's result objects would try to reach the stopped
    # Redis from their destructors and print noise.
    os._exit(code)
