"""A small python-socketio client of the hub for the tests' own work (submitting, waiting).

Envelopes and replies as in docs/protocol.md §2 and §4: every message is the Socket.IO event
`envelope`; a request is answered by `reply` (or `gz_error`) whose `correlation_id` is the
request's `id`.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid

import socketio


class HubError(Exception):
    def __init__(self, error: dict):
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error
        self.code = error.get("code")


class HubClient:
    def __init__(self, url: str, api_key: str):
        self.url = url
        self.api_key = api_key
        self.sio = socketio.Client(reconnection=False)
        self.pending: dict[str, dict] = {}
        self.events: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        for name in ("reply", "gz_error"):
            self.sio.on(name, self._answer(name))
        self.sio.on("*", self._event)

    def _answer(self, name):
        def handler(env):
            slot = self.pending.pop(env.get("correlation_id"), None)
            if slot is None:
                self._event(name, env)
                return
            slot["answer"] = {"error": env["payload"]} if name == "gz_error" else env["payload"]
            slot["done"].set()
        return handler

    def _event(self, name, env=None):
        with self.changed:
            self.events.append((name, env))
            self.changed.notify_all()

    def connect(self) -> "HubClient":
        self.sio.connect(self.url, auth={"api_key": self.api_key}, transports=["websocket"], wait_timeout=10)
        return self

    def close(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001
            pass

    def request(self, event: str, payload=None, target: str = "hub", timeout: float = 60):
        env = {"v": 1, "id": str(uuid.uuid4()), "target": target, "event": event,
               "payload": {} if payload is None else payload, "ts": int(time.time() * 1000)}
        slot = self.pending[env["id"]] = {"done": threading.Event()}
        self.sio.emit("envelope", env)
        if not slot["done"].wait(timeout):
            self.pending.pop(env["id"], None)
            raise TimeoutError(f"no reply to {event} within {timeout} s")
        answer = slot["answer"]
        if "error" in answer and answer["error"]:
            raise HubError(answer["error"])
        return answer.get("ok")

    def spec_of(self, yaml_text: str) -> dict:
        """The normalized spec of a YAML workflow, from the hub's POST /validate."""
        req = urllib.request.Request(self.url + "/validate", data=yaml_text.encode(), method="POST")
        req.add_header("Authorization", f"Bearer {self.api_key}")
        req.add_header("Content-Type", "application/yaml")
        with urllib.request.urlopen(req, timeout=120) as res:
            answer = json.loads(res.read())
        if not answer["valid"]:
            raise ValueError(f"invalid workflow: {answer['diagnostics']}")
        return answer["spec"]

    def submit_yaml(self, yaml_text: str) -> str:
        reply = self.request("workflow_submit", {"spec": self.spec_of(yaml_text)}, "type:queue-manager", timeout=120)
        return reply["workflow_id"]

    def wait_status(self, workflow_id: str, statuses: set[str], deadline_s: float) -> dict:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            got = self.request("workflow_get", {"workflow_id": workflow_id, "summary": True}, "type:queue-manager")
            if got["workflow"]["status"] in statuses:
                return got
            time.sleep(0.2)
        raise TimeoutError(f"workflow {workflow_id} not {statuses} within {deadline_s} s")
