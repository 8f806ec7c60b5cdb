"""The client: submit workflows, follow their events, wait for results, cancel, list.

:class:`GleitzeitCluster` talks to the hub as a plain client (``docs/protocol.md`` §5.3,
§5.6). It chooses each workflow's id itself and joins the room ``workflow:<id>`` before
submitting, so no event is missed; events of the workflows it submitted (or was asked to
``watch``) are delivered to ``on(...)`` callbacks, to ``events()`` iterators and to
``wait()``, each once and in ``seq`` order (they arrive in ``event_batch`` envelopes, one
per workflow per message the queue-manager handled). Across a reconnect it re-joins the rooms and
fetches what it missed with ``workflow_events`` (``after_seq`` = the last ``seq`` seen),
dropping duplicates; when the queue-manager no longer holds them it re-reads the workflow
with ``workflow_get``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import shutil
import uuid
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._wire import Connection
from .attachments import attach as attach_files
from .credentials import DEFAULT_HUB_URL, local_key, resolve_api_key, resolve_hub_urls
from .errors import GleitzeitError
from .workflow import Workflow

#: Failures after which a submit carrying an idempotency key is sent again.
RETRY_SAFE = ("GZ1031", "GZ1030", "GZ1020", "GZ1001")
#: How long a submit keeps trying while no queue-manager can take it (seconds).
SUBMIT_PATIENCE = 30.0
# Tasks per ``workflow_get`` page when the SDK reads a workflow's tasks.
TASKS_PAGE = 5_000

__all__ = ["GleitzeitCluster", "WORKFLOW_EVENTS", "TASK_EVENTS", "FINAL_EVENTS"]

log = logging.getLogger("gleitzeit.cluster")

WORKFLOW_EVENTS = (
    "workflow_submitted",
    "workflow_started",
    "workflow_progress",
    "workflow_completed",
    "workflow_failed",
    "workflow_cancelled",
)
TASK_EVENTS = (
    "task_started",
    "task_completed",
    "task_failed",
    "task_retrying",
    "task_skipped",
    "task_progress",
)
COMPONENT_EVENTS = ("component_joined", "component_left", "component_unhealthy")
#: Events of the original API the suite never emits (accepted by ``on`` so old code runs).
NEVER_EMITTED = ("system_alert",)
#: Names of the original API that mean a component event here.
EVENT_ALIASES = {"node_joined": "component_joined", "node_left": "component_left"}
#: The envelope that carries the queue-manager's workflow and task events (§5.6).
EVENT_BATCH = "event_batch"
#: The final event of a workflow → its status.
FINAL_EVENTS = {
    "workflow_completed": "completed",
    "workflow_failed": "failed",
    "workflow_cancelled": "cancelled",
}
FINAL_STATUSES = {"completed": "workflow_completed", "failed": "workflow_failed", "cancelled": "workflow_cancelled"}
#: How long an out-of-order event waits for the ones before it before catching up.
GAP_WAIT = 0.3
#: How often ``wait`` checks the stored status (in case a final event was lost).
WAIT_POLL = 5.0

Callback = Callable[..., Union[None, Awaitable[None]]]


class _Track:
    """What the cluster knows about one workflow's events."""

    def __init__(self, workflow_id: str, released: bool) -> None:
        self.id = workflow_id
        self.last_seq = 0
        self.buffer: Dict[int, Tuple[str, Dict[str, Any]]] = {}
        self.history: List[Dict[str, Any]] = []
        self.listeners: List["asyncio.Queue[Dict[str, Any]]"] = []
        self.final: Optional[Dict[str, Any]] = None
        self.done: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self.source: Optional[str] = None
        self.released = released
        self.held: List[Tuple[str, Dict[str, Any]]] = []
        self.gap_timer: Optional[asyncio.TimerHandle] = None
        self.catching_up = False
        self.catch_up_again = False
        self.gap_attempts = 0


class GleitzeitCluster:
    """A connection to a Gleitzeit suite for submitting and following workflows.

    ``hub_url``: one URL, several comma-separated (or a list) of one mesh; default
    ``GLEITZEIT_HUB_URL``, else ``http://127.0.0.1:8000``. ``api_key``: default from the
    environment, the saved login or the local suite (``gleitzeit.credentials``). With
    ``start_local=True`` (or when no hub answers at the default local URL and
    ``auto_start`` is on) a local suite is started with ``gz start --detach`` and stopped
    again by :meth:`stop`. The events of the last ``keep_finished`` finished workflows stay
    in memory (for late ``events()`` iterators and ``wait`` calls); older ones are read
    back from the queue-manager when asked for.
    """

    def __init__(
        self,
        hub_url: Union[None, str, Sequence[str]] = None,
        api_key: Optional[str] = None,
        start_local: bool = False,
        data_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        *,
        auto_start: bool = True,
        request_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        keep_finished: int = 1000,
    ) -> None:
        self._hub_url_arg = hub_url
        self.hub_urls = resolve_hub_urls(hub_url)
        self._api_key_arg = api_key
        self.start_local = start_local
        self.auto_start = auto_start
        self.data_dir = os.fspath(data_dir) if data_dir is not None else None
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self._conn: Optional[Connection] = None
        self._callbacks: Dict[str, List[Callback]] = {}
        self._tracks: Dict[str, _Track] = {}
        self._deliveries: Optional["asyncio.Queue[Tuple[str, Dict[str, Any]]]"] = None
        self._delivery_task: Optional["asyncio.Task[None]"] = None
        self._background: "set[asyncio.Task[Any]]" = set()
        self._started_local = False
        self._local_key: Optional[str] = None
        self._components_joined = False
        self._join_after_submit = False
        #: Finished workflows whose events stay in memory (the oldest are forgotten first).
        self.keep_finished = keep_finished
        self._finished: "collections.deque[str]" = collections.deque()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> "GleitzeitCluster":
        """Connects to the hub (starting a local suite if asked to, or if none answers at
        the default local URL)."""
        if self._conn is not None:
            return self
        key = resolve_api_key(self._api_key_arg, self.data_dir)
        if self.start_local:
            await self._start_local_suite()
            key = self._local_key or key
        try:
            conn = await self._connect(key)
        except GleitzeitError as err:
            if err.code != "GZ1010" or self._started_local or not self._may_start_local():
                raise
            log.info("no hub answers at %s: starting a local suite", self.hub_urls[0])
            await self._start_local_suite()
            conn = await self._connect(self._local_key or key)
        self._conn = conn
        if self._started_local:
            await self._wait_local_services(conn)
        self._deliveries = asyncio.Queue()
        self._delivery_task = asyncio.ensure_future(self._deliver_callbacks())
        if any(self._callbacks.get(e) for e in COMPONENT_EVENTS):
            await self._join_components()
        return self

    async def _connect(self, key: Optional[str]) -> Connection:
        conn = Connection(
            self.hub_urls,
            key,
            request_timeout=self.request_timeout,
            connect_timeout=self.connect_timeout,
        )
        for name in WORKFLOW_EVENTS + TASK_EVENTS:
            conn.on(name, self._on_workflow_envelope)
        conn.on(EVENT_BATCH, self._on_batch_envelope)
        for name in COMPONENT_EVENTS:
            conn.on(name, self._on_component_envelope)
        conn.on_reconnect(self._on_reconnect)
        await conn.connect()
        return conn

    async def stop(self) -> None:
        """Disconnects (and stops the local suite this cluster started)."""
        conn, self._conn = self._conn, None
        for track in self._tracks.values():
            if track.gap_timer is not None:
                track.gap_timer.cancel()
        if self._delivery_task is not None:
            # let callbacks of events already delivered run first
            if self._deliveries is not None and not self._deliveries.empty():
                try:
                    await asyncio.wait_for(self._deliveries.join(), 2.0)
                except asyncio.TimeoutError:
                    pass
            self._delivery_task.cancel()
            await asyncio.gather(self._delivery_task, return_exceptions=True)
            self._delivery_task = None
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if conn is not None:
            await conn.close()
        if self._started_local:
            await self._stop_local_suite()

    async def __aenter__(self) -> "GleitzeitCluster":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    def _need(self) -> Connection:
        if self._conn is None:
            raise GleitzeitError(
                "GZ1031", "the cluster is not started", hint="Call `await cluster.start()` first (or use `async with`)."
            )
        return self._conn

    # ------------------------------------------------------------------ local suite

    def _may_start_local(self) -> bool:
        return self.auto_start and self.hub_urls == [DEFAULT_HUB_URL]

    def _gz(self) -> str:
        gz = os.environ.get("GLEITZEIT_GZ") or shutil.which("gz")
        if not gz:
            raise GleitzeitError(
                "GZ1010",
                "no hub answers at %s and `gz` was not found to start a local suite" % self.hub_urls[0],
                hint="Put `gz` on PATH (or set GLEITZEIT_GZ), or start the suite with `gz start`.",
                retryable=True,
            )
        return gz

    async def _run_gz(self, args: List[str], env: Optional[Dict[str, str]] = None, timeout: float = 120.0) -> Tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            self._gz(),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return -1, "timed out after %.0f s" % timeout
        return proc.returncode or 0, out.decode("utf-8", "replace")

    async def _start_local_suite(self) -> None:
        args = ["start", "--detach", "--hub-url", self.hub_urls[0]]
        env = dict(os.environ)
        if self.data_dir:
            args += ["--data-dir", self.data_dir]
            env["GLEITZEIT_DATA_DIR"] = self.data_dir
        code, out = await self._run_gz(args, env=env)
        if code != 0:
            raise GleitzeitError(
                "GZ1010",
                "no hub answers at %s and `gz start --detach` failed (exit %d): %s"
                % (self.hub_urls[0], code, out.strip()[-500:]),
                retryable=True,
            )
        self._started_local = True
        self._local_key = local_key(self.data_dir)

    async def _wait_local_services(self, conn: Connection, within: float = 15.0) -> None:
        """Waits (at most ``within`` s) until the services a workflow needs registered."""
        needed = {"queue-manager", "dependency-resolver", "execution-engine"}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while loop.time() < deadline:
            try:
                have = {c.get("component_type") for c in await conn.request("list_components", {}, timeout=5.0)}
            except GleitzeitError:
                have = set()
            if needed <= have:
                return
            await asyncio.sleep(0.1)
        log.warning("the local suite's services did not all register within %.0f s", within)

    async def _stop_local_suite(self) -> None:
        env = dict(os.environ)
        if self._local_key:
            env["GLEITZEIT_API_KEY"] = self._local_key
        if self.data_dir:
            env["GLEITZEIT_DATA_DIR"] = self.data_dir
        code, out = await self._run_gz(["stop", "--hub-url", self.hub_urls[0]], env=env, timeout=30.0)
        if code != 0:
            log.warning("gz stop failed (exit %d): %s", code, out.strip()[-300:])
        self._started_local = False

    # ------------------------------------------------------------------ callbacks

    def on(self, event: str, callback: Optional[Callback] = None) -> Any:
        """Calls ``callback(payload)`` (sync or async) for every ``event`` of the workflows
        this cluster submitted or watches; ``"*"`` gets ``callback(event, payload)`` for
        every event. Usable as a decorator: ``@cluster.on("task_completed")``."""
        event = EVENT_ALIASES.get(event, event)
        known = WORKFLOW_EVENTS + TASK_EVENTS + COMPONENT_EVENTS + NEVER_EMITTED + ("*",)
        if event not in known:
            raise ValueError("unknown event %r (known: %s)" % (event, ", ".join(known)))

        def register(cb: Callback) -> Callback:
            self._callbacks.setdefault(event, []).append(cb)
            if event in COMPONENT_EVENTS and self._conn is not None and not self._components_joined:
                self._spawn(self._join_components())
            return cb

        if callback is None:
            return register
        register(callback)
        return None

    def off(self, event: str, callback: Optional[Callback] = None) -> None:
        """Removes a callback (or every callback of ``event``)."""
        event = EVENT_ALIASES.get(event, event)
        if callback is None:
            self._callbacks.pop(event, None)
        else:
            lst = self._callbacks.get(event, [])
            if callback in lst:
                lst.remove(callback)

    async def _join_components(self) -> None:
        self._components_joined = True
        try:
            await self._need().subscribe(["components"])
        except GleitzeitError as err:
            self._components_joined = False
            log.warning("cannot join the components room: %s", err)

    async def _deliver_callbacks(self) -> None:
        assert self._deliveries is not None
        while True:
            event, payload = await self._deliveries.get()
            try:
                for cb in list(self._callbacks.get(event, [])):
                    await self._call(cb, payload)
                for cb in list(self._callbacks.get("*", [])):
                    await self._call(cb, event, payload)
            finally:
                self._deliveries.task_done()

    async def _call(self, cb: Callback, *args: Any) -> None:
        try:
            result = cb(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("callback %r failed", getattr(cb, "__name__", cb))

    def _queue_callbacks(self, track: _Track, event: str, payload: Dict[str, Any]) -> None:
        if not track.released:
            track.held.append((event, payload))
            return
        if self._deliveries is not None:
            self._deliveries.put_nowait((event, payload))

    def _release(self, track: _Track) -> None:
        track.released = True
        held, track.held = track.held, []
        for event, payload in held:
            self._queue_callbacks(track, event, payload)

    # ------------------------------------------------------------------ incoming events

    def _on_component_envelope(self, env: Dict[str, Any]) -> None:
        if self._deliveries is not None:
            payload = env.get("payload") if isinstance(env.get("payload"), dict) else {}
            self._deliveries.put_nowait((env.get("event", ""), payload))

    def _on_workflow_envelope(self, env: Dict[str, Any]) -> None:
        payload = env.get("payload")
        if not isinstance(payload, dict):
            return
        track = self._tracks.get(str(payload.get("workflow_id", "")))
        if track is None:
            return
        event = env.get("event", "")
        seq = payload.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            # task_progress: no seq, not kept for catch-up; passed on as it comes
            if track.final is None:
                rec = {"event": event, "seq": None, "payload": payload}
                for q in track.listeners:
                    q.put_nowait(rec)
                self._queue_callbacks(track, event, payload)
            return
        if env.get("source"):
            track.source = env["source"]
        self._ingest(track, [(seq, event, payload)])
        self._drain(track)

    def _on_batch_envelope(self, env: Dict[str, Any]) -> None:
        """An ``event_batch``: events of one workflow in ``seq`` order, taken in as one
        catch-up would be and delivered each once, in order (``docs/protocol.md`` §5.6)."""
        batch = env.get("payload")
        if not isinstance(batch, dict):
            return
        track = self._tracks.get(str(batch.get("workflow_id", "")))
        if track is None:
            return
        items: List[Tuple[int, str, Dict[str, Any]]] = []
        for ev in batch.get("events") or []:
            if not isinstance(ev, dict):
                continue
            seq = ev.get("seq")
            payload = ev.get("payload")
            if isinstance(seq, int) and not isinstance(seq, bool) and isinstance(payload, dict):
                items.append((seq, str(ev.get("event", "")), payload))
        if env.get("source"):
            track.source = env["source"]
        self._ingest(track, items)
        self._drain(track)

    def _ingest(self, track: _Track, items: Sequence[Tuple[int, str, Dict[str, Any]]]) -> None:
        for seq, event, payload in items:
            if track.final is not None or seq <= track.last_seq or seq in track.buffer:
                continue
            track.buffer[seq] = (event, payload)

    def _drain(self, track: _Track, upto: Optional[int] = None) -> None:
        """Delivers buffered events in order: the next ``seq``, and (after a catch-up)
        everything up to ``upto`` even across a gap nobody can fill."""
        while track.buffer and track.final is None:
            nxt = min(track.buffer)
            if nxt == track.last_seq + 1 or (track.last_seq == 0 and nxt == 1) or (upto is not None and nxt <= upto):
                event, payload = track.buffer.pop(nxt)
                self._deliver(track, nxt, event, payload)
            else:
                break
        if track.final is not None:
            track.buffer.clear()
        if track.buffer:
            self._schedule_catch_up(track, GAP_WAIT)
        else:
            track.gap_attempts = 0
            if track.gap_timer is not None:
                track.gap_timer.cancel()
                track.gap_timer = None

    def _deliver(self, track: _Track, seq: int, event: str, payload: Dict[str, Any]) -> None:
        track.last_seq = seq
        rec = {"event": event, "seq": seq, "payload": payload}
        track.history.append(rec)
        for q in track.listeners:
            q.put_nowait(rec)
        if event in FINAL_EVENTS:
            track.final = rec
            if not track.done.done():
                track.done.set_result(rec)
            if track.gap_timer is not None:
                track.gap_timer.cancel()
                track.gap_timer = None
            if self._conn is not None:
                self._spawn(self._conn.unsubscribe(["workflow:%s" % track.id]))
            self._finished.append(track.id)
            while len(self._finished) > self.keep_finished:
                old = self._tracks.get(self._finished.popleft())
                if old is not None and not old.listeners:
                    self._tracks.pop(old.id, None)
        self._queue_callbacks(track, event, payload)

    def _schedule_catch_up(self, track: _Track, delay: float) -> None:
        if track.gap_timer is not None or track.final is not None:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            track.gap_timer = None
            self._spawn(self._catch_up(track))

        track.gap_timer = loop.call_later(delay, fire)

    async def _on_reconnect(self) -> None:
        for track in list(self._tracks.values()):
            if track.final is None:
                self._spawn(self._catch_up(track))

    async def _workflow_events(self, track: _Track) -> Dict[str, Any]:
        conn = self._need()
        payload = {"workflow_id": track.id, "after_seq": track.last_seq}
        if track.source:
            try:
                return await conn.request("workflow_events", payload, "component:%s" % track.source)
            except GleitzeitError as err:
                if err.code != "GZ1020":
                    raise
                track.source = None  # the owner left: ask any queue-manager
        return await conn.request("workflow_events", payload, "type:queue-manager")

    async def _catch_up(self, track: _Track) -> None:
        """Fetches the events after the last ``seq`` seen (one catch-up at a time per workflow)."""
        if track.catching_up:
            track.catch_up_again = True
            return
        track.catching_up = True
        try:
            while track.final is None and self._conn is not None:
                track.catch_up_again = False
                try:
                    reply = await self._workflow_events(track)
                except GleitzeitError as err:
                    log.info("catching up %s failed: %s", track.id, err)
                    if err.retryable:
                        self._schedule_catch_up(track, 1.0)
                    return
                items: List[Tuple[int, str, Dict[str, Any]]] = []
                for ev in reply.get("events") or []:
                    seq = ev.get("seq")
                    payload = ev.get("payload") if isinstance(ev.get("payload"), dict) else {}
                    if isinstance(seq, int):
                        items.append((seq, str(ev.get("event", "")), payload))
                complete = bool(reply.get("complete"))
                self._ingest(track, items)
                if items:
                    upto: Optional[int] = max(s for s, _, _ in items)
                elif not complete:
                    upto = max(track.buffer) if track.buffer else None
                else:
                    upto = None
                track.gap_attempts += 1
                if track.gap_attempts > 5 and track.buffer:
                    upto = max(track.buffer)  # a gap nobody fills: go on
                self._drain(track, upto)
                if not complete and track.final is None:
                    await self._reread(track)
                if not track.catch_up_again:
                    return
        finally:
            track.catching_up = False

    async def _reread(self, track: _Track, strict: bool = False) -> None:
        """Events were lost for good: read the stored workflow; if it finished, deliver its
        final event made from the record (marked ``"synthesized": true``). ``strict``: a
        workflow that cannot be read (GZ3020, GZ4003) raises."""
        try:
            reply = await self.get_workflow(track.id)
        except GleitzeitError as err:
            if strict and not err.retryable:
                raise
            log.info("re-reading %s failed: %s", track.id, err)
            return
        record = reply.get("workflow") or {}
        status = record.get("status")
        if status not in FINAL_STATUSES or track.final is not None:
            return
        counts = reply.get("counts") or {}
        tasks = reply.get("tasks") or []
        payload = {
            "workflow_id": track.id,
            "name": record.get("name"),
            "status": status,
            "total_tasks": record.get("total_tasks", counts.get("total")),
            "completed_tasks": counts.get("completed", 0),
            "failed_tasks": counts.get("failed", 0),
            "skipped_tasks": counts.get("skipped", 0),
            "finished_tasks": counts.get("finished", 0),
            "error": record.get("error"),
            "task_results": {t["task_id"]: t.get("result") for t in tasks if t.get("status") == "completed"},
            "seq": track.last_seq + 1,
            "synthesized": True,
        }
        track.buffer.clear()
        self._deliver(track, track.last_seq + 1, FINAL_STATUSES[status], payload)

    # ------------------------------------------------------------------ workflows

    def create_workflow(self, name: str, **kwargs: Any) -> Workflow:
        """A new, empty :class:`Workflow` (as ``Workflow(name, ...)``)."""
        return Workflow(name, **kwargs)

    @staticmethod
    def _spec_of(
        workflow: Union[Workflow, str, "os.PathLike[str]", Mapping[str, Any]],
        base_dir: Optional[str] = None,
    ) -> Tuple[Dict[str, Any], str]:
        """The spec to submit, carrying the files its tasks name (read from ``base_dir``, by
        default the YAML file's folder, else the current directory), and that folder."""
        if isinstance(workflow, Workflow):
            wf = workflow
        elif isinstance(workflow, Mapping):
            wf = Workflow.from_dict(workflow)
        elif isinstance(workflow, (str, os.PathLike)):
            wf = Workflow.from_yaml(workflow)
        else:
            raise TypeError("submit a Workflow, a YAML file path or a dict, not %r" % type(workflow).__name__)
        folder = os.path.abspath(base_dir or wf.base_dir or os.getcwd())
        return attach_files(wf.to_dict(), folder), folder

    def _new_track(self, workflow_id: str, released: bool) -> _Track:
        track = self._tracks.get(workflow_id)
        if track is None:
            track = _Track(workflow_id, released)
            self._tracks[workflow_id] = track
        return track

    async def submit_workflow(
        self,
        workflow: Union[Workflow, str, "os.PathLike[str]", Mapping[str, Any]],
        base_dir: Optional[str] = None,
    ) -> str:
        """Submits a :class:`Workflow`, a YAML file or a dict; returns the workflow id.

        Relative paths in the workflow resolve against ``base_dir``: by default the YAML
        file's folder, else the current directory.
        """
        conn = self._need()
        spec, default_dir = self._spec_of(workflow, base_dir)
        workflow_id = "wf-%s" % uuid.uuid4().hex
        track = self._new_track(workflow_id, released=False)
        room = "workflow:%s" % workflow_id
        payload = {
            "spec": spec,
            "workflow_id": workflow_id,
            "base_dir": os.path.abspath(base_dir or default_dir),
            # one key per submission: a retried submit never creates a second workflow
            "idempotency_key": str(uuid.uuid4()),
        }
        joined = False
        try:
            if not self._join_after_submit:
                try:
                    await conn.subscribe([room])
                    joined = True
                except GleitzeitError as err:
                    # a USER may watch only a workflow that exists and is theirs: join after
                    # submitting and fetch what came before (nothing is missed either way)
                    if err.code != "GZ4003":
                        raise
                    self._join_after_submit = True
            reply = await self._submit(conn, payload)
        except BaseException:
            self._tracks.pop(workflow_id, None)
            conn.forget_room(room)
            raise
        self._release(track)
        if not joined:
            try:
                await conn.subscribe([room])
            except GleitzeitError as err:
                # accepted all the same: a lost session re-joins the room after reconnecting
                log.warning("joining %s after submitting failed: %s", room, err)
            await self._catch_up(track)
        return str(reply.get("workflow_id") or workflow_id)

    async def _submit(self, conn: Connection, payload: Dict[str, Any]) -> Dict[str, Any]:
        """``workflow_submit`` with the payload's idempotency key, so it is safe to send
        again: a lost session (GZ1031), a timeout (GZ1030), no queue-manager connected for a
        moment (GZ1020) or its store unreachable (GZ1001) is asked again with a backoff of
        0.1 s doubling to 2 s, for up to ``SUBMIT_PATIENCE`` seconds; the queue-manager
        answers a repeated key with the first submission's workflow."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SUBMIT_PATIENCE
        backoff = 0.1
        attempts = 0
        while True:
            attempts += 1
            try:
                return await conn.request("workflow_submit", payload, "type:queue-manager")
            except GleitzeitError as err:
                if attempts > 1 and err.code == "GZ7001" and "already in use" in err.message:
                    # a queue-manager without idempotency keys accepted the first attempt
                    return {"workflow_id": payload["workflow_id"]}
                if err.code not in RETRY_SAFE or loop.time() + backoff >= deadline:
                    raise
                log.info("submit of %s failed (%s); retrying", payload["workflow_id"], err.code)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def watch(self, workflow_id: str) -> None:
        """Follows a workflow this cluster did not submit: its events are delivered from
        the first one the queue-manager still holds."""
        if workflow_id in self._tracks:
            return
        conn = self._need()
        track = self._new_track(workflow_id, released=True)
        try:
            await conn.subscribe(["workflow:%s" % workflow_id])
        except BaseException:
            self._tracks.pop(workflow_id, None)
            conn.forget_room("workflow:%s" % workflow_id)
            raise
        try:
            await self._catch_up(track)
            if track.final is None and track.last_seq == 0:
                await self._reread(track, strict=True)
        except BaseException:
            self.forget(workflow_id)
            raise

    def forget(self, workflow_id: str) -> None:
        """Stops following a workflow and drops the events kept for it."""
        track = self._tracks.pop(workflow_id, None)
        if track is not None and track.gap_timer is not None:
            track.gap_timer.cancel()
        if self._conn is not None:
            self._spawn(self._conn.unsubscribe(["workflow:%s" % workflow_id]))

    async def events(self, workflow_id: str, progress: bool = False) -> AsyncIterator[Dict[str, Any]]:
        """Yields ``{"event", "seq", "payload"}`` of a workflow in ``seq`` order, from its
        first event, ending after its final one. ``progress=True`` also yields
        ``task_progress`` (``seq`` None) as it comes."""
        if workflow_id not in self._tracks:
            await self.watch(workflow_id)
        track = self._tracks[workflow_id]
        queue: "asyncio.Queue[Dict[str, Any]]" = asyncio.Queue()
        snapshot = list(track.history)
        track.listeners.append(queue)
        try:
            for rec in snapshot:
                yield rec
                if rec["event"] in FINAL_EVENTS:
                    return
            while True:
                rec = await queue.get()
                if rec["seq"] is None and not progress:
                    continue
                yield rec
                if rec["event"] in FINAL_EVENTS:
                    return
        finally:
            if queue in track.listeners:
                track.listeners.remove(queue)

    async def wait(
        self,
        workflow_id: str,
        timeout: Optional[float] = None,
        raise_on_failure: bool = True,
    ) -> Dict[str, Any]:
        """Waits until the workflow finished and returns task id → result of its completed
        tasks. A failed or cancelled workflow raises its error (GleitzeitError) unless
        ``raise_on_failure=False``: then the workflow record is returned (with ``counts``
        and ``task_results``). GZ1030 when ``timeout`` seconds passed first."""
        if workflow_id not in self._tracks:
            await self.watch(workflow_id)
        track = self._tracks[workflow_id]
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not track.done.done():
            step = WAIT_POLL if deadline is None else max(0.0, min(WAIT_POLL, deadline - loop.time()))
            try:
                await asyncio.wait_for(asyncio.shield(track.done), step)
            except asyncio.TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    raise GleitzeitError(
                        "GZ1030",
                        "workflow %s did not finish within %.1f s" % (workflow_id, timeout or 0),
                        hint="It keeps running; wait again or cancel it.",
                        retryable=True,
                    ) from None
                await self._check_finished(track)
        final = track.done.result()
        payload = final["payload"]
        status = FINAL_EVENTS[final["event"]]
        results = payload.get("task_results")
        if results is None or (not raise_on_failure):
            reply = await self.get_workflow(workflow_id)
            if results is None:
                results = {
                    t["task_id"]: t.get("result") for t in reply.get("tasks") or [] if t.get("status") == "completed"
                }
            if not raise_on_failure:
                record = dict(reply.get("workflow") or {})
                record["counts"] = reply.get("counts")
                record["task_results"] = results
                return record
        if status != "completed":
            error = payload.get("error") or {
                "code": "GZ2006" if status == "cancelled" else "GZ2001",
                "message": "workflow %s %s" % (workflow_id, status),
            }
            err = GleitzeitError.from_wire(error)
            setattr(err, "workflow_id", workflow_id)
            setattr(err, "task_results", results)
            raise err
        return dict(results)

    async def _check_finished(self, track: _Track) -> None:
        """The safety net of ``wait``: when the store says the workflow finished but its
        final event has not come, catch up (and re-read)."""
        try:
            reply = await self._need().request(
                "workflow_get", {"workflow_id": track.id, "summary": True}, "type:queue-manager"
            )
        except GleitzeitError as err:
            log.debug("status check of %s: %s", track.id, err)
            return
        status = (reply.get("workflow") or {}).get("status")
        if status in FINAL_STATUSES and track.final is None:
            await self._catch_up(track)
            if track.final is None:
                await self._reread(track)

    async def run(
        self,
        workflow: Union[Workflow, str, "os.PathLike[str]", Mapping[str, Any]],
        timeout: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Submits and waits: task id → result."""
        return await self.wait(await self.submit_workflow(workflow), timeout=timeout)

    async def cancel(self, workflow_id: str) -> Dict[str, Any]:
        """Cancels a workflow: ``{"workflow_id", "cancelled", "status"}``."""
        conn = self._need()
        track = self._tracks.get(workflow_id)
        payload = {"workflow_id": workflow_id}
        if track is not None and track.source:
            try:
                return await conn.request("workflow_cancel", payload, "component:%s" % track.source)
            except GleitzeitError as err:
                if err.code != "GZ1020":
                    raise
        return await conn.request("workflow_cancel", payload, "type:queue-manager")

    async def get_workflow(
        self,
        workflow_id: str,
        summary: bool = False,
        status: Optional[str] = None,
        page_size: int = TASKS_PAGE,
    ) -> Dict[str, Any]:
        """``{"workflow": WorkflowRecord, "counts": Counts, "tasks": [TaskRecord]}``: every
        task (only those of ``status``, e.g. ``"failed"``, when given), read in pages of
        ``page_size`` (1–10,000) so that a big workflow's task list never has to fit one
        message; ``summary=True`` leaves the tasks out."""
        payload: Dict[str, Any] = {"workflow_id": workflow_id}
        if summary:
            payload["summary"] = True
            return await self._need().request("workflow_get", payload, "type:queue-manager")
        if status is not None:
            payload["status"] = status
        payload["limit"] = max(1, min(int(page_size), 10_000))
        reply = await self._need().request("workflow_get", payload, "type:queue-manager")
        tasks = list(reply.get("tasks") or [])
        while reply.get("next_offset") is not None:
            payload["offset"] = reply["next_offset"]
            reply = await self._need().request("workflow_get", payload, "type:queue-manager")
            tasks.extend(reply.get("tasks") or [])
        reply.pop("next_offset", None)
        reply["tasks"] = tasks
        return reply

    async def list_workflows(self, limit: int = 20, status: Optional[str] = None) -> List[Dict[str, Any]]:
        """Workflow records, newest first."""
        payload: Dict[str, Any] = {"limit": limit}
        if status is not None:
            payload["status"] = status
        return await self._need().request("workflow_list", payload, "type:queue-manager")

    async def get_task(self, workflow_id: Optional[str], task_id: str) -> Dict[str, Any]:
        """A task record (``workflow_id`` None: every workflow is searched, newest first)."""
        payload: Dict[str, Any] = {"task_id": task_id}
        if workflow_id is not None:
            payload["workflow_id"] = workflow_id
        return await self._need().request("task_get", payload, "type:queue-manager")

    async def list_components(self) -> List[Dict[str, Any]]:
        """Every registered component (``ComponentInfo``)."""
        return await self._need().request("list_components", {})

    async def list_functions(self) -> List[Dict[str, Any]]:
        """Every function declared by a registered component (registration metadata
        ``functions``), each with the ``component_id`` and ``health`` of its provider."""
        out: List[Dict[str, Any]] = []
        for comp in await self.list_components():
            metadata = comp.get("metadata")
            if not isinstance(metadata, dict):
                continue
            for fn in metadata.get("functions") or []:
                if isinstance(fn, dict):
                    entry = dict(fn)
                    entry.setdefault("service_name", metadata.get("service_name"))
                    entry["component_id"] = comp.get("component_id")
                    entry["component_type"] = comp.get("component_type")
                    entry["health"] = comp.get("health")
                    out.append(entry)
        return out

    async def hub_status(self) -> Dict[str, Any]:
        return await self._need().request("hub_status", {})

    # ------------------------------------------------------------------ helpers

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
