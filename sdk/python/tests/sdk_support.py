"""Real Gleitzeit processes for the SDK's tests (helpers; the fixtures are in conftest.py).

The ``suite`` fixture (one per test session) uses :class:`Suite` to start the binaries of ``$GLEITZEIT_BIN_DIR``
(default ``<repo>/target/debug``; build them with ``cargo build --bins``): an admin key
from ``gz auth init``, ``central-hub`` on port 0 (its ready file names the port),
``queue-manager``, ``dependency-resolver``, ``execution-engine``, ``python-provider``, and
``gleitzeit-llm-sim`` with an ``ollama-provider`` pointed at it. Everything binds
127.0.0.1, logs into the session's temp dir, and is killed by its pid at the end (also when
tests fail). Nothing reaches the internet.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN_DIR = Path(os.environ.get("GLEITZEIT_BIN_DIR") or REPO / "target" / "debug")
TESTS = Path(__file__).resolve().parent

#: How long a process may take to become ready.
READY_WITHIN = 30.0


BINARIES = (
    "gz",
    "central-hub",
    "queue-manager",
    "dependency-resolver",
    "execution-engine",
    "python-provider",
    "ollama-provider",
    "http-provider",
    "gleitzeit-llm-sim",
)
_stage: Dict[str, Path] = {}


def _stage_binaries() -> Path:
    """Hard links (or copies) of the binaries in a folder of the session's own, so a
    `cargo build` replacing them meanwhile cannot pull them from under the tests (and `gz
    start` finds the services beside `gz`)."""
    if "dir" in _stage:
        return _stage["dir"]
    folder = Path(tempfile.mkdtemp(prefix="gleitzeit-sdk-bin-"))
    for name in BINARIES:
        src = BIN_DIR / name
        deadline = time.monotonic() + 60
        while not src.exists() and time.monotonic() < deadline and BIN_DIR.exists():
            time.sleep(0.5)  # a build in progress may be replacing it
        if not src.exists():
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip("binary %s missing (run `cargo build --bins` in %s)" % (src, REPO))
        try:
            os.link(src, folder / name)
        except OSError:
            shutil.copy2(src, folder / name)
    _stage["dir"] = folder
    return folder


def bin_path(name: str) -> str:
    return str(_stage_binaries() / name)


def wait_until(check: Callable[[], Any], within: float, what: str, every: float = 0.05) -> Any:
    """Polls ``check`` until it returns something true; fails the test after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (within, what))
        time.sleep(every)


def run(coro: Any, timeout: float = 90.0) -> Any:
    """Runs a coroutine on a new event loop with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Proc:
    """A child process whose output goes to a log file; killed by its pid."""

    def __init__(self, name: str, args: List[str], env: Dict[str, str], log_dir: Path, cwd: Optional[str] = None) -> None:
        self.name = name
        self.log_path = log_dir / ("%s.log" % name)
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def terminate(self, within: float = 10.0) -> Optional[int]:
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Suite:
    """A hub and the suite's services, as real processes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.logs = root / "logs"
        self.data_dir.mkdir(parents=True)
        self.logs.mkdir()
        self.procs: Dict[str, Proc] = {}
        self.hub_url = ""
        self.key = ""
        self.sim_url = ""

    def base_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        for name in ("GLEITZEIT_API_KEY", "GLEITZEIT_API_KEY_FILE", "GLEITZEIT_HUB_URL", "GLEITZEIT_OLLAMA_URLS"):
            env.pop(name, None)
        env["GLEITZEIT_DATA_DIR"] = str(self.data_dir)
        env["GLEITZEIT_CONFIG_DIR"] = str(self.root / "config")
        env["GLEITZEIT_LOG_LEVEL"] = "warn"
        env["NO_PROXY"] = "127.0.0.1,localhost"
        return env

    def env(self, **extra: str) -> Dict[str, str]:
        env = self.base_env()
        env["GLEITZEIT_HUB_URL"] = self.hub_url
        env["GLEITZEIT_API_KEY"] = self.key
        env.update(extra)
        return env

    def spawn(self, name: str, args: List[str], env: Optional[Dict[str, str]] = None) -> Proc:
        proc = Proc(name, args, env or self.env(), self.logs)
        self.procs[name] = proc
        return proc

    def read_ready(self, proc: Proc, ready: Path) -> str:
        def check() -> Optional[str]:
            if not proc.alive():
                raise AssertionError("%s exited early:\n%s" % (proc.name, proc.log()[-3000:]))
            try:
                text = ready.read_text().strip()
            except OSError:
                return None
            return text or None

        return wait_until(check, READY_WITHIN, "%s's ready file" % proc.name)

    def init_key(self) -> None:
        out = subprocess.run(
            [bin_path("gz"), "auth", "init", "--data-dir", str(self.data_dir), "--json"],
            env=self.base_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        self.key = json.loads(out.stdout)["api_key"]

    def start_hub(self) -> None:
        ready = self.root / "hub.ready"
        proc = self.spawn(
            "central-hub",
            [
                bin_path("central-hub"),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                "--data-dir",
                str(self.data_dir),
            ],
            env=self.base_env(),
        )
        self.hub_url = "http://%s" % self.read_ready(proc, ready)

    def start_llm_sim(self) -> None:
        ready = self.root / "sim.ready"
        proc = self.spawn(
            "llm-sim",
            [
                bin_path("gleitzeit-llm-sim"),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--ready-file",
                str(ready),
                "--models",
                "llama3:latest,llama3.2:latest,llava:latest",
                "--latency-ms",
                "5",
                "--tokens-per-sec",
                "0",
            ],
            env=self.base_env(),
        )
        self.sim_url = "http://%s" % self.read_ready(proc, ready)
        config = self.root / "ollama.yaml"
        config.write_text('endpoints:\n  - { name: sim, url: "%s", max_concurrent: 8 }\n' % self.sim_url)
        self.spawn(
            "ollama-provider",
            [bin_path("ollama-provider"), "--component-id", "ollama-1"],
            env=self.env(GLEITZEIT_OLLAMA_CONFIG=str(config)),
        )

    def start_services(self) -> None:
        self.spawn(
            "queue-manager",
            [
                bin_path("queue-manager"),
                "--component-id",
                "qm-1",
                "--data-dir",
                str(self.data_dir / "qm"),
                "--provider-grace",
                "20",
            ],
        )
        self.spawn("dependency-resolver", [bin_path("dependency-resolver"), "--component-id", "dr-1"])
        self.spawn("execution-engine", [bin_path("execution-engine"), "--component-id", "ee-1", "--prefetch", "1"])
        self.spawn(
            "python-provider",
            [bin_path("python-provider"), "--component-id", "py-1", "--workers", "2", "--data-dir", str(self.data_dir)],
        )

    def components(self) -> List[Dict[str, Any]]:
        req = urllib.request.Request(self.hub_url + "/components", headers={"Authorization": "Bearer " + self.key})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=5) as resp:
                return json.loads(resp.read().decode())
        except OSError:
            return []

    def wait_registered(self, ids: List[str], within: float = READY_WITHIN) -> None:
        def check() -> bool:
            for proc in self.procs.values():
                if not proc.alive() and proc.name in ("central-hub", "queue-manager", "execution-engine"):
                    raise AssertionError("%s exited:\n%s" % (proc.name, proc.log()[-3000:]))
            have = {c.get("component_id") for c in self.components()}
            return all(i in have for i in ids)

        wait_until(check, within, "components %s" % ids, every=0.1)

    def wait_gone(self, component_id: str, within: float = READY_WITHIN) -> None:
        wait_until(
            lambda: all(c.get("component_id") != component_id for c in self.components()),
            within,
            "%s to leave" % component_id,
            every=0.1,
        )

    def gz(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [bin_path("gz"), *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def python(self, name: str, script: str, *args: str, **env: str) -> Proc:
        """A Python child (e.g. a task service) running a script of the tests folder."""
        full_env = self.env(**env)
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS), str(TESTS.parent)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else [])
        )
        return self.spawn(name, [sys.executable, str(TESTS / script), *args], env=full_env)

    def stop(self) -> None:
        for proc in list(self.procs.values()):
            proc.kill()
