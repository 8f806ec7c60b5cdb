"""Checks the Gleitzeit hub with the official python-socketio client.

Usage: hub_client_check.py HUB_URL MODE TRANSPORT
  MODE join:      subscribe to the `components` room, write "ready" to $READY_FILE, wait
                  for a component_joined event, write "joined <id>" to $READY_FILE, exit 0.
  MODE malformed: send malformed envelopes and check each gets a gz_error reply; then check
                  the hub still answers a valid request. Prints "case <name>: <code>" lines.
"""

import json
import os
import sys
import threading
import uuid

import socketio

# The API key comes from the environment, as for every Gleitzeit client.
AUTH = {"api_key": os.environ["GLEITZEIT_API_KEY"]} if os.environ.get("GLEITZEIT_API_KEY") else None


def envelope(event, payload, target="hub"):
    return {"v": 1, "id": str(uuid.uuid4()), "source": "", "target": target, "event": event, "payload": payload}


def join(url, transport):
    ready_file = os.environ["READY_FILE"]
    sio = socketio.Client(reconnection=False)
    joined = threading.Event()
    subscribed = threading.Event()
    seen = {}

    @sio.on("reply")
    def on_reply(env):
        subscribed.set()

    @sio.on("component_joined")
    def on_joined(env):
        seen["id"] = env["payload"]["component_id"]
        joined.set()

    sio.connect(url, transports=[transport], wait_timeout=10, auth=AUTH)
    sio.emit("envelope", envelope("subscribe", {"rooms": ["components"]}))
    if not subscribed.wait(10):
        print("no subscribe reply")
        return 1
    with open(ready_file, "w") as f:
        f.write("ready\n")
    if not joined.wait(20):
        print("no component_joined event")
        return 1
    with open(ready_file, "w") as f:
        f.write("joined %s\n" % seen["id"])
    sio.disconnect()
    return 0


def malformed(url, transport):
    sio = socketio.Client(reconnection=False)
    errors = []
    got = threading.Condition()
    replies = []

    @sio.on("gz_error")
    def on_error(env):
        with got:
            errors.append(env)
            got.notify_all()

    @sio.on("reply")
    def on_reply(env):
        with got:
            replies.append(env)
            got.notify_all()

    sio.connect(url, transports=[transport], wait_timeout=10, auth=AUTH)
    good = envelope("register", {"component_type": "", "component_id": ""})
    cases = [
        ("string", "envelope", "this is not json"),
        ("number", "envelope", 42),
        ("missing_fields", "envelope", {"payload": {}}),
        ("wrong_types", "envelope", {"id": 7, "target": ["hub"], "event": {"x": 1}}),
        ("bad_target", "envelope", {"id": "x1", "target": "planet:earth", "event": "ping"}),
        ("huge_event", "envelope", {"id": "x2", "target": "hub", "event": "e" * 2_000_000}),
        ("unknown_sio_event", "no_such_event", {"a": 1}),
        ("bad_register", "envelope", good),
    ]
    failed = 0
    for name, sio_event, data in cases:
        with got:
            before = len(errors)
            sio.emit(sio_event, data)
            ok = got.wait_for(lambda: len(errors) > before, timeout=10)
        if not ok:
            print("case %s: NO REPLY" % name)
            failed += 1
            continue
        err = errors[-1]["payload"]
        print("case %s: %s %s" % (name, err["code"], err["message"][:80]))
    with got:
        sio.emit("envelope", envelope("hub_status", {}))
        ok = got.wait_for(lambda: len(replies) > 0, timeout=10)
    print("still serving: %s" % ("ok" if ok and replies[-1]["payload"]["ok"]["status"] == "ok" else "NO"))
    sio.disconnect()
    return 1 if failed else 0


def main():
    url, mode, transport = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "join":
        return join(url, transport)
    return malformed(url, transport)


if __name__ == "__main__":
    sys.exit(main())
