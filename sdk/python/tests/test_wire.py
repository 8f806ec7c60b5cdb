"""The hub connection itself, against a hub of its own (fast heartbeats, frozen with SIGSTOP)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from sdk_support import Suite, bin_path, run
from gleitzeit import GleitzeitError
from gleitzeit._wire import Connection


@pytest.fixture
def hub():
    """A hub alone, heartbeat interval 0.3 s (timeout 1.5 s)."""
    root = Path(tempfile.mkdtemp(prefix="gleitzeit-sdk-hub-"))
    s = Suite(root)
    try:
        s.init_key()
        ready = root / "hub.ready"
        proc = s.spawn(
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
                str(s.data_dir),
                "--heartbeat-interval",
                "0.3",
                "--heartbeat-timeout",
                "1.5",
            ],
            env=s.base_env(),
        )
        s.hub_url = "http://%s" % s.read_ready(proc, ready)
        yield s
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def component(hub, component_id: str) -> Connection:
    return Connection(
        [hub.hub_url],
        hub.key,
        register=lambda: {
            "component_type": "wire-test",
            "component_id": component_id,
            "capabilities": [],
            "capacity": 0,
            "load": 0,
            "metadata": {},
        },
        request_timeout=5.0,
    )


def test_components_answer_ping_and_refuse_unknown_events(hub):
    async def main():
        comp = component(hub, "wire-comp-1")
        client = Connection([hub.hub_url], hub.key, request_timeout=5.0)
        await comp.connect()
        await client.connect()
        try:
            pong = await client.request("ping", {}, "component:wire-comp-1")
            with pytest.raises(GleitzeitError) as unknown:
                await client.request("no_such_event", {}, "component:wire-comp-1")
            status = await client.request("hub_status", {})
            return pong, unknown.value, status, comp.heartbeat_interval, comp.hub_id
        finally:
            await client.close()
            await comp.close()

    pong, unknown, status, interval, hub_id = run(main(), 30)
    assert pong == {"component_id": "wire-comp-1", "pid": os.getpid()}
    assert unknown.code == "GZ7021", unknown
    assert status["status"] == "ok" and status["hub_id"] == hub_id
    assert interval == pytest.approx(0.3)


def test_unanswered_heartbeats_drop_the_session_and_it_comes_back(hub):
    async def main():
        comp = component(hub, "wire-comp-2")
        client = Connection([hub.hub_url], hub.key, request_timeout=5.0)
        await comp.connect()
        await client.connect()
        await client.subscribe(["my-room"])
        reconnected = asyncio.Event()
        client.on_reconnect(reconnected.set)
        try:
            hub_proc = hub.procs["central-hub"]
            hub_proc.signal(signal.SIGSTOP)  # the hub answers nothing
            await asyncio.sleep(2.0)
            lost = not comp.connected
            hub_proc.signal(signal.SIGCONT)
            deadline = time.monotonic() + 20
            while not comp.connected or comp.reconnects == 0:
                assert time.monotonic() < deadline, "the component never reconnected"
                await asyncio.sleep(0.05)
            # the plain client notices too (its heartbeats are every 5 s): force it to move on
            if client.reconnects == 0:
                await client.sio.disconnect()
            await asyncio.wait_for(reconnected.wait(), 20)
            # the room was re-joined (the hub lists the socket's rooms in a subscribe reply)
            rooms = (await client.request("subscribe", {"rooms": []}))["rooms"]
            pong = await client.request("ping", {}, "component:wire-comp-2")
            return lost, pong, rooms
        finally:
            hub.procs["central-hub"].signal(signal.SIGCONT)
            await client.close()
            await comp.close()

    lost, pong, rooms = run(main(), 60)
    assert lost  # 3 heartbeats unanswered (0.9 s) dropped the session
    assert pong["component_id"] == "wire-comp-2"
    assert "my-room" in rooms


def test_pending_requests_fail_at_once_when_the_session_drops_and_time_out_otherwise(hub):
    async def main():
        silent = component(hub, "wire-silent")
        silent.on("question", lambda env: None)  # handled, never answered
        client = Connection([hub.hub_url], hub.key, request_timeout=1.0)
        await silent.connect()
        await client.connect()
        try:
            started = time.monotonic()
            with pytest.raises(GleitzeitError) as timeout:
                await client.request("question", {}, "component:wire-silent")
            waited = time.monotonic() - started
            pending = asyncio.ensure_future(client.request("question", {}, "component:wire-silent", timeout=30))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await client.sio.disconnect()
            with pytest.raises(GleitzeitError) as dropped:
                await pending
            failed_after = time.monotonic() - started
            with pytest.raises(GleitzeitError) as nobody:
                await client.request("question", {}, "component:nobody-here")
            return timeout.value, waited, dropped.value, failed_after, nobody.value
        finally:
            await client.close()
            await silent.close()

    timeout, waited, dropped, failed_after, nobody = run(main(), 60)
    assert timeout.code == "GZ1030" and 0.9 < waited < 3
    assert dropped.code == "GZ1031" and dropped.retryable and failed_after < 1.0
    assert nobody.code == "GZ1020"


def test_an_unknown_key_and_no_key_raise_gz4001_at_first_connect(hub):
    async def main():
        bad = Connection([hub.hub_url], "gzt_123456789012_" + "a" * 64, connect_timeout=3)
        with pytest.raises(GleitzeitError) as info:
            await bad.connect()
        none = Connection([hub.hub_url], None, connect_timeout=3)
        with pytest.raises(GleitzeitError) as missing:
            await none.connect()
        return info.value, missing.value

    bad, missing = run(main(), 30)
    assert bad.code == "GZ4001" and missing.code == "GZ4001"
