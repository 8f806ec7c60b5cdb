"""A Gleitzeit suite of real processes for the browser tests and the load script.

The hub is started on port 0 with --ready-file (it writes the address it bound), the
services with GLEITZEIT_HUB_URL, an admin key and the data dir. Every child logs to a file
in the work dir and is stopped by its pid (SIGTERM, then SIGKILL); every wait has a
deadline. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("queue-manager", "dependency-resolver", "execution-engine", "python-provider")


def bin_dir() -> Path:
    return Path(os.environ.get("GLEITZEIT_BIN_DIR", REPO / "target" / "debug"))


def wait_until(what: str, check, deadline_s: float, every: float = 0.1):
    """Calls check() until it returns something truthy; raises after the deadline."""
    end = time.monotonic() + deadline_s
    last_error = None
    while time.monotonic() < end:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported when the deadline passes
            last_error = e
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {deadline_s} s (last error: {last_error})")


class Suite:
    """Hub plus queue-manager, dependency-resolver, execution-engine and python-provider."""

    def __init__(self, workdir: Path, allowed_origins: list[str] | None = None,
                 services: tuple[str, ...] = SERVICES, python_workers: int | None = None,
                 extra_env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.logs = self.workdir / "logs"
        self.allowed_origins = allowed_origins or []
        self.services = services
        self.python_workers = python_workers
        self.extra_env = extra_env or {}
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.url = ""
        self.port = 0
        self.admin_key = ""
        self.keys: dict[str, str] = {}

    # ---- processes ----

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")
        full_env = dict(os.environ)
        full_env.pop("GLEITZEIT_API_KEY", None)
        full_env.update({"RUST_LOG": full_env.get("RUST_LOG", "info"), "NO_COLOR": "1"})
        full_env.update(self.extra_env)
        full_env.update(env or {})
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, cwd=str(self.workdir), start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        return proc

    def gz(self, *args: str, timeout: float = 30) -> str:
        env = dict(os.environ)
        env.pop("GLEITZEIT_API_KEY", None)
        out = subprocess.run([str(bin_dir() / "gz"), *args], capture_output=True, text=True,
                             timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError(f"gz {' '.join(args[:3])} failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout

    def start(self) -> "Suite":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        init = json.loads(self.gz("auth", "init", "--data-dir", str(self.data_dir), "--json"))
        self.admin_key = init["api_key"]
        self._start_hub(0)
        env = {"GLEITZEIT_HUB_URL": self.url, "GLEITZEIT_API_KEY": self.admin_key,
               "GLEITZEIT_DATA_DIR": str(self.data_dir)}
        for name in self.services:
            args = [str(bin_dir() / name)]
            if name == "python-provider" and self.python_workers:
                args += ["--workers", str(self.python_workers)]
            self._spawn(name, args, env)
        wait_until("services registered", self._all_registered, 60, every=0.25)
        return self

    def _start_hub(self, port: int) -> None:
        ready = self.workdir / "hub.ready"
        if ready.exists():
            ready.unlink()
        args = [str(bin_dir() / "central-hub"), "--host", "127.0.0.1", "--port", str(port),
                "--ready-file", str(ready), "--data-dir", str(self.data_dir)]
        if self.allowed_origins:
            args += ["--allowed-origins", ",".join(self.allowed_origins)]
        hub = self._spawn("central-hub", args)

        def hub_ready():
            if hub.poll() is not None:
                raise RuntimeError(f"central-hub exited with {hub.returncode}; see {self.logs}")
            text = ready.read_text().strip() if ready.exists() else ""
            return text if ":" in text else None

        addr = wait_until("hub ready file", hub_ready, 30)
        self.port = int(addr.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def kill_hub(self) -> None:
        """Kills the hub (SIGKILL, by its pid), as a crash would."""
        for i, (name, proc) in enumerate(self.procs):
            if name == "central-hub" and proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                del self.procs[i]
                return

    def restart_hub(self) -> None:
        """Starts the hub again on the same port and data dir; waits for the services."""
        self._start_hub(self.port)
        wait_until("services registered again", self._all_registered, 60, every=0.25)

    def spawn_service(self, name: str, component_id: str, *extra: str) -> subprocess.Popen:
        """One more service process (e.g. a second python-provider) of this suite."""
        env = {"GLEITZEIT_HUB_URL": self.url, "GLEITZEIT_API_KEY": self.admin_key,
               "GLEITZEIT_DATA_DIR": str(self.data_dir)}
        return self._spawn(component_id, [str(bin_dir() / name), "--component-id", component_id, *extra], env)

    def spawn_llm_sim(self, *extra: str) -> str:
        """gleitzeit-llm-sim on a port of its own; returns its URL."""
        ready = self.workdir / f"llm-sim-{len(self.procs)}.ready"
        proc = self._spawn(f"llm-sim-{len(self.procs)}", [str(bin_dir() / "gleitzeit-llm-sim"), "--host", "127.0.0.1",
                                                         "--port", "0", "--ready-file", str(ready), *extra])

        def listening():
            if proc.poll() is not None:
                raise RuntimeError(f"gleitzeit-llm-sim exited with {proc.returncode}")
            text = ready.read_text().strip() if ready.exists() else ""
            return text if ":" in text else None

        return "http://" + wait_until("llm-sim ready file", listening, 30)

    def _all_registered(self) -> bool:
        for name, proc in self.procs:
            if (name == "central-hub" or name in self.services) and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.logs / (name + '.log')}")
        types = {c["component_type"] for c in self.http_json("/components")}
        return all(s in types for s in self.services)

    def stop(self) -> None:
        """Stops every child by its pid: SIGTERM, then SIGKILL after 5 s."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + 5
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        self.procs.clear()

    # ---- keys ----

    def make_key(self, user: str, role: str) -> str:
        """A user with `role` and a key for it, made through the hub with the admin key."""
        common = ["--hub-url", self.url, "--api-key", self.admin_key]
        self.gz("auth", "user", "create", user, "--role", role, "--json", *common)
        out = json.loads(self.gz("auth", "key", "create", f"{user}-key", "--user", user, "--json", *common))
        key = out.get("api_key") or out.get("key", {}).get("api_key")
        assert key and key.startswith("gzt_"), out
        self.keys[user] = key
        return key

    # ---- HTTP ----

    def http_json(self, path: str, key: str | None = None, data: bytes | None = None, method: str | None = None,
                  headers: dict[str, str] | None = None):
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {key or self.admin_key}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=30) as res:
            return json.loads(res.read())


def free_log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
