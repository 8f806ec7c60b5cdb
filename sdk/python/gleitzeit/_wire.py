"""One connection to the Gleitzeit hub, on python-socketio's ``AsyncClient``.

What it does (``docs/protocol.md`` §1-§4, §7 and §13):

- connects over websocket with ``auth={"api_key": key}``; a refusal (GZ4001/GZ4002 in the
  ``connect_error`` message) raises :class:`GleitzeitError` at the first connect;
- sends every message as the Socket.IO event ``envelope`` carrying
  ``{v, id, target, event, payload, ts}``;
- matches ``reply`` / ``registered`` / ``gz_error`` to pending requests by
  ``correlation_id``, with a timeout (GZ1030); a request pending when the session drops
  fails at once with GZ1031;
- hands every other incoming envelope to the handlers registered for its event name, one
  at a time and in arrival order, off the receive path;
- for components: registers (and re-registers after each reconnect), sends ``heartbeat``
  ``{"load": n}`` every ``heartbeat_interval_ms`` (three unanswered: the session is dropped
  and rebuilt), answers ``ping`` and answers unknown requests with GZ7021;
- on a lost session moves to the next hub URL at once; when every hub failed it waits
  100 ms, doubling up to 5 s, plus 0-99 ms of jitter; after every reconnect it re-joins the
  remembered rooms, sends what waited in the outbox, then calls the reconnect callbacks.

The API key is never logged.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import random
import socket
import ssl
import time
import uuid
from typing import Any, Awaitable, Callable, Deque, Dict, List, Optional, Sequence, Union

import socketio

from .errors import GleitzeitError

__all__ = ["Connection", "envelope", "now_ms"]

log = logging.getLogger("gleitzeit.wire")

PROTOCOL_VERSION = 1
#: Events that answer a request.
ANSWER_EVENTS = ("reply", "registered", "gz_error")
#: Envelopes kept while disconnected before sends fail with GZ1031.
OUTBOX_LIMIT = 10_000
#: Heartbeat interval of plain clients, seconds (components use the hub's).
CLIENT_HEARTBEAT = 5.0
#: Heartbeats that may go unanswered before the session is dropped.
MISSED_HEARTBEATS = 3

Handler = Callable[[Dict[str, Any]], Union[None, Awaitable[None]]]


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


def envelope(
    event: str,
    payload: Any = None,
    target: str = "hub",
    correlation_id: Optional[str] = None,
) -> Dict[str, Any]:
    """A new envelope with a fresh id."""
    env: Dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "id": str(uuid.uuid4()),
        "target": target,
        "event": event,
        "payload": {} if payload is None else payload,
        "ts": now_ms(),
    }
    if correlation_id:
        env["correlation_id"] = correlation_id
    return env


def _refusal(message: Any) -> Optional[GleitzeitError]:
    """The GZ4001/GZ4002 error in a ``connect_error`` message, if it is one."""
    if isinstance(message, dict):
        message = message.get("message", message)
    text = str(message or "")
    for code in ("GZ4001", "GZ4002"):
        if code in text:
            body = text.split(":", 1)[1].strip() if text.startswith(code + ":") else text
            hint = None
            if " (hint: " in body and body.endswith(")"):
                body, hint = body[:-1].split(" (hint: ", 1)
            return GleitzeitError(code, body, hint=hint, retryable=False)
    return None


def _disconnected(message: str = "the connection to the hub was lost") -> GleitzeitError:
    return GleitzeitError(
        "GZ1031",
        message,
        hint="The client reconnects by itself; check that the hub is running.",
        retryable=True,
    )


def _ssl_context() -> Optional[ssl.SSLContext]:
    """System CAs plus the PEM file named by ``GLEITZEIT_TLS_CA``, when that is set."""
    ca = os.environ.get("GLEITZEIT_TLS_CA")
    if not ca:
        return None
    ctx = ssl.create_default_context()
    try:
        ctx.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise GleitzeitError(
            "GZ1012",
            "GLEITZEIT_TLS_CA (%s) could not be loaded: %s" % (ca, exc),
            hint="Point GLEITZEIT_TLS_CA at a PEM file holding the CA certificate.",
        ) from None
    return ctx


class _Session:
    """One Socket.IO connection (a new one after every reconnect)."""

    def __init__(self, sio: socketio.AsyncClient, url: str, number: int) -> None:
        self.sio = sio
        self.url = url
        self.number = number
        self.lost = False
        self.heartbeat_task: Optional["asyncio.Task[None]"] = None


class Connection:
    """A connection to the hub for a plain client or, with ``register``, a component.

    ``register`` is called at every (re)connect and returns the ``RegisterPayload``;
    ``load`` returns the load sent with each heartbeat.
    """

    def __init__(
        self,
        hub_urls: Sequence[str],
        api_key: Optional[str],
        *,
        register: Optional[Callable[[], Dict[str, Any]]] = None,
        load: Optional[Callable[[], int]] = None,
        request_timeout: float = 30.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if not hub_urls:
            raise ValueError("at least one hub URL is needed")
        self.urls: List[str] = list(hub_urls)
        self._api_key = api_key
        self._register = register
        self._load = load or (lambda: 0)
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat_interval = CLIENT_HEARTBEAT
        self.hub_id: Optional[str] = None
        self.component_id: Optional[str] = None
        self._handlers: Dict[str, List[Handler]] = {}
        self._reconnect_callbacks: List[Callable[[], Any]] = []
        self._rooms: Dict[str, None] = {}
        self._pending: Dict[str, "asyncio.Future[Any]"] = {}
        self._pending_session: Dict[str, int] = {}
        self._outbox: Deque[Dict[str, Any]] = collections.deque()
        self._session: Optional[_Session] = None
        self._sessions = 0
        self._url_index = 0
        self._closing = False
        self._started = False
        self._tasks: List["asyncio.Task[Any]"] = []
        self._background: "set[asyncio.Task[Any]]" = set()
        # Created in the running loop (asyncio primitives of Python 3.9 bind a loop early).
        self._connected: Optional[asyncio.Event] = None
        self._lost: Optional[asyncio.Event] = None
        self._incoming: Optional["asyncio.Queue[Dict[str, Any]]"] = None
        self.reconnects = 0
        if register is not None:
            self.on("ping", self._answer_ping)

    # ------------------------------------------------------------------ public

    @property
    def sio(self) -> Optional[socketio.AsyncClient]:
        """The current Socket.IO client (None while disconnected)."""
        return self._session.sio if self._session is not None else None

    @property
    def connected(self) -> bool:
        return self._connected is not None and self._connected.is_set()

    @property
    def is_component(self) -> bool:
        return self._register is not None

    @property
    def url(self) -> Optional[str]:
        """The hub URL of the current session."""
        return self._session.url if self._session is not None else None

    @property
    def source(self) -> Optional[str]:
        """This connection's ``source`` on the wire: the component id, or ``sid:<socket id>``."""
        if self.component_id:
            return self.component_id
        sio = self.sio
        if sio is None:
            return None
        sid = sio.get_sid()
        return "sid:%s" % sid if sid else None

    def on(self, event: str, handler: Handler) -> None:
        """Calls ``handler(envelope)`` for every incoming ``event`` (``"*"``: events that
        have no handler of their own). Handlers may be coroutines; they run one at a time."""
        self._handlers.setdefault(event, []).append(handler)

    def on_reconnect(self, callback: Callable[[], Any]) -> None:
        """Calls ``callback()`` (sync or async) after every reconnect, once rooms are re-joined."""
        self._reconnect_callbacks.append(callback)

    async def connect(self, retry_forever: bool = False) -> None:
        """The first connect: every hub in turn, with backoff once all failed.

        Raises GZ4001/GZ4002 when the hub refuses the key (and any refusal of ``register``);
        a plain client gives up with GZ1010 after ``connect_timeout`` seconds, a component
        with ``retry_forever`` keeps trying.
        """
        if self._started:
            return
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._incoming = asyncio.Queue()
        loop = asyncio.get_running_loop()
        deadline = None if retry_forever else loop.time() + self.connect_timeout
        backoff = 0.1
        failed_in_round = 0
        last: Optional[GleitzeitError] = None
        while True:
            url = self.urls[self._url_index]
            try:
                await self._open(url)
                break
            except GleitzeitError as err:
                if err.code in ("GZ4001", "GZ4002", "GZ4003", "GZ1012", "GZ7012", "GZ7020"):
                    raise
                last = err
                log.debug("connect to %s failed: %s", url, err)
            self._url_index = (self._url_index + 1) % len(self.urls)
            failed_in_round += 1
            if deadline is not None and loop.time() >= deadline:
                break
            if failed_in_round % len(self.urls) == 0:
                pause = backoff + random.random() * 0.099
                if deadline is not None:
                    pause = min(pause, max(0.0, deadline - loop.time()))
                await asyncio.sleep(pause)
                backoff = min(backoff * 2, 5.0)
        if self._session is None:
            raise GleitzeitError(
                "GZ1010",
                "cannot reach the Gleitzeit hub at %s%s"
                % (", ".join(self.urls), (": %s" % last.message) if last else ""),
                hint="Start the suite with `gz start` (or `gz hub`), or set hub_url / "
                "GLEITZEIT_HUB_URL to a running hub.",
                retryable=True,
            )
        self._started = True
        self._tasks.append(asyncio.ensure_future(self._supervise()))
        self._tasks.append(asyncio.ensure_future(self._dispatch()))
        await self._flush_outbox(self._session)
        self._connected.set()

    async def request(
        self,
        event: str,
        payload: Any = None,
        target: str = "hub",
        timeout: Optional[float] = None,
    ) -> Any:
        """Sends a request and returns the ``ok`` value of its answer.

        Raises the answer's error as :class:`GleitzeitError`; GZ1030 when no answer came
        within ``timeout`` (default ``request_timeout``); GZ1031 when the session was lost
        while waiting.
        """
        loop = asyncio.get_running_loop()
        limit = self.request_timeout if timeout is None else timeout
        deadline = loop.time() + limit
        await self._wait_connected(deadline, event)
        session = self._session
        assert session is not None
        env = envelope(event, payload, target)
        future = self._track(env["id"], session)
        try:
            try:
                await session.sio.emit("envelope", env)
            except Exception as exc:  # the session went away under us
                raise _disconnected("the connection to the hub was lost while sending %s (%s)" % (event, exc)) from None
            remaining = max(0.0, deadline - loop.time())
            try:
                return await asyncio.wait_for(asyncio.shield(future), remaining)
            except asyncio.TimeoutError:
                raise GleitzeitError(
                    "GZ1030",
                    "no answer to %s (to %s) within %.1f s" % (event, target, limit),
                    hint="The component may be overloaded or gone; check `gz status` and retry.",
                    retryable=True,
                ) from None
        finally:
            self._untrack(env["id"])

    async def send(
        self,
        event: str,
        payload: Any = None,
        target: str = "hub",
        correlation_id: Optional[str] = None,
    ) -> None:
        """Sends a message without waiting for an answer. While disconnected it waits in
        the outbox and goes out first on the next session (GZ1031 when the outbox is full)."""
        env = envelope(event, payload, target, correlation_id)
        session = self._session
        if self.connected and session is not None and not self._outbox:
            try:
                await session.sio.emit("envelope", env)
                return
            except Exception:
                self._mark_lost(session, "emit failed")
        if self._closing:
            raise _disconnected("the connection is closed")
        if len(self._outbox) >= OUTBOX_LIMIT:
            raise _disconnected("the connection to the hub is lost and %d messages wait already" % OUTBOX_LIMIT)
        self._outbox.append(env)

    async def reply(self, request: Dict[str, Any], ok: Any = None, error: Any = None) -> None:
        """Answers a request (``reply`` to ``component:<request.source>``)."""
        if error is not None:
            if isinstance(error, GleitzeitError):
                error = error.to_wire()
            payload: Dict[str, Any] = {"error": error}
        else:
            payload = {"ok": ok}
        source = request.get("source")
        if not source:
            return
        await self.send("reply", payload, "component:%s" % source, correlation_id=request.get("id"))

    async def subscribe(self, rooms: Sequence[str], timeout: Optional[float] = None) -> Any:
        """Joins rooms (and again after every reconnect). A refusal (e.g. GZ4003) forgets
        the rooms again; a lost session keeps them for the re-join."""
        new = [room for room in rooms if room not in self._rooms]
        for room in rooms:
            self._rooms[room] = None
        try:
            return await self.request("subscribe", {"rooms": list(rooms)}, timeout=timeout)
        except GleitzeitError as err:
            if not err.retryable:
                for room in new:
                    self._rooms.pop(room, None)
            raise

    async def unsubscribe(self, rooms: Sequence[str]) -> None:
        """Leaves rooms (best effort: a lost session left them anyway)."""
        for room in rooms:
            self._rooms.pop(room, None)
        if not self.connected:
            return
        try:
            await self.request("unsubscribe", {"rooms": list(rooms)}, timeout=5.0)
        except GleitzeitError as err:
            log.debug("unsubscribe %s: %s", rooms, err)

    def forget_room(self, room: str) -> None:
        """Stops re-joining ``room`` after reconnects (without leaving it now)."""
        self._rooms.pop(room, None)

    async def drop_session(self) -> None:
        """Closes the current session as if it were lost (the connection then reconnects)."""
        session = self._session
        if session is not None:
            self._mark_lost(session, "dropped on request")
            await self._close_sio(session.sio)

    async def close(self, deregister: bool = True) -> None:
        """Deregisters (components, waiting at most 2 s), sends what waits, disconnects."""
        if self._closing:
            return
        if self.is_component and deregister and self.connected:
            try:
                await self.request("deregister", {}, timeout=2.0)
            except GleitzeitError as err:
                log.debug("deregister: %s", err)
        self._closing = True
        session = self._session
        if session is not None and not session.lost and self._outbox:
            await self._flush_outbox(session)
        for task in self._tasks:
            task.cancel()
        for task in list(self._background):
            task.cancel()
        if session is not None:
            if session.heartbeat_task is not None:
                session.heartbeat_task.cancel()
            await self._close_sio(session.sio)
        self._session = None
        if self._connected is not None:
            self._connected.clear()
        self._fail_pending(None, _disconnected("the connection was closed"))
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        self._tasks.clear()

    # ------------------------------------------------------------------ sessions

    async def _open(self, url: str) -> None:
        """Connects to ``url`` (and registers); on success it is the current session."""
        options: Dict[str, Any] = {}
        if url.startswith("https://"):
            ctx = _ssl_context()
            if ctx is not None:
                options["websocket_extra_options"] = {"ssl": ctx}
        sio = socketio.AsyncClient(
            reconnection=False,
            logger=False,
            engineio_logger=False,
            handle_sigint=False,
            request_timeout=max(1, int(self.connect_timeout)),
            **options,
        )
        self._sessions += 1
        session = _Session(sio, url, self._sessions)
        refused: Dict[str, Any] = {}

        def on_connect_error(data: Any = None) -> None:
            refused["message"] = data

        def on_any(event: str, *args: Any) -> None:
            self._on_message(session, event, args)

        def on_disconnect(*_args: Any) -> None:
            self._mark_lost(session, "disconnected")

        sio.on("connect_error", on_connect_error)
        sio.on("disconnect", on_disconnect)
        sio.on("*", on_any)
        auth = {"api_key": self._api_key} if self._api_key else None
        try:
            await asyncio.wait_for(
                sio.connect(url, auth=auth, transports=["websocket"], wait_timeout=5),
                timeout=self.connect_timeout + 5.0,
            )
        except (socketio.exceptions.ConnectionError, asyncio.TimeoutError, OSError, ValueError) as exc:
            await self._close_sio(sio)
            refusal = _refusal(refused.get("message"))
            if refusal is not None:
                raise refusal from None
            reason = refused.get("message") or exc or "timed out"
            raise GleitzeitError("GZ1010", "cannot reach the hub at %s: %s" % (url, reason), retryable=True) from None
        self._session = session
        session.lost = False
        if self._register is not None:
            payload = self._register()
            env = envelope("register", payload, "hub")
            future = self._track(env["id"], session)
            try:
                await sio.emit("envelope", env)
                answer = await asyncio.wait_for(asyncio.shield(future), 5.0)
            except GleitzeitError:
                self._session = None
                await self._close_sio(sio)
                raise
            except (asyncio.TimeoutError, Exception) as exc:
                self._session = None
                await self._close_sio(sio)
                raise GleitzeitError("GZ1010", "no answer to register from %s: %r" % (url, exc), retryable=True) from None
            finally:
                self._untrack(env["id"])
            self.component_id = answer.get("component_id", payload.get("component_id"))
            self.hub_id = answer.get("hub_id")
            interval_ms = answer.get("heartbeat_interval_ms") or 5000
            self.heartbeat_interval = max(0.05, float(interval_ms) / 1000.0)
        session.heartbeat_task = asyncio.ensure_future(self._heartbeats(session))
        log.debug("connected to %s (session %d)", url, session.number)

    def _mark_lost(self, session: _Session, why: str) -> None:
        if session.lost:
            return
        session.lost = True
        if session is not self._session or self._closing:
            return
        log.info("session to %s lost (%s)", session.url, why)
        if self._connected is not None:
            self._connected.clear()
        if session.heartbeat_task is not None:
            session.heartbeat_task.cancel()
        self._fail_pending(session.number, _disconnected())
        if self._lost is not None:
            self._lost.set()

    async def _close_sio(self, sio: socketio.AsyncClient) -> None:
        try:
            await asyncio.wait_for(sio.disconnect(), 3.0)
        except Exception:
            pass
        http = getattr(getattr(sio, "eio", None), "http", None)
        if http is not None and not http.closed:
            try:
                await http.close()
            except Exception:
                pass

    async def _supervise(self) -> None:
        """Rebuilds lost sessions for the life of the connection."""
        assert self._lost is not None and self._connected is not None
        while not self._closing:
            await self._lost.wait()
            if self._closing:
                return
            self._lost.clear()
            old = self._session
            if old is not None:
                await self._close_sio(old.sio)
            self._session = None
            backoff = 0.1
            failed = 0
            while not self._closing:
                # a lost session moves to the next hub at once
                self._url_index = (self._url_index + 1) % len(self.urls)
                url = self.urls[self._url_index]
                try:
                    await self._open(url)
                    break
                except GleitzeitError as err:
                    log.info("reconnect to %s failed: %s", url, err)
                except Exception as err:  # never let the supervisor die
                    log.warning("reconnect to %s failed: %r", url, err)
                failed += 1
                if failed % len(self.urls) == 0:
                    await asyncio.sleep(backoff + random.random() * 0.099)
                    backoff = min(backoff * 2, 5.0)
            if self._closing:
                return
            session = self._session
            if session is None:
                continue
            if self._rooms:
                env = envelope("subscribe", {"rooms": list(self._rooms)}, "hub")
                future = self._track(env["id"], session)
                try:
                    await session.sio.emit("envelope", env)
                    await asyncio.wait_for(asyncio.shield(future), 10.0)
                except Exception as err:
                    log.info("re-joining rooms failed: %r", err)
                finally:
                    self._untrack(env["id"])
            if session.lost:
                continue
            await self._flush_outbox(session)
            if session.lost:
                continue
            self.reconnects += 1
            self._connected.set()
            log.info("reconnected to %s", session.url)
            for callback in list(self._reconnect_callbacks):
                self._spawn(self._call(callback))

    async def _flush_outbox(self, session: _Session) -> None:
        while self._outbox and not session.lost:
            env = self._outbox[0]
            try:
                await session.sio.emit("envelope", env)
            except Exception:
                self._mark_lost(session, "emit failed")
                return
            self._outbox.popleft()

    async def _wait_connected(self, deadline: float, event: str) -> None:
        if self._closing or not self._started:
            raise _disconnected("not connected to the hub (call start/connect first)" if not self._started else "the connection is closed")
        assert self._connected is not None
        if self._connected.is_set():
            return
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(self._connected.wait(), max(0.0, remaining))
        except asyncio.TimeoutError:
            raise GleitzeitError(
                "GZ1030",
                "no connection to the hub to send %s" % event,
                hint="The client reconnects by itself; check that the hub is running.",
                retryable=True,
            ) from None

    async def _heartbeats(self, session: _Session) -> None:
        """Heartbeats of one session; three unanswered drop it."""
        state = {"unanswered": 0}
        sent: List[str] = []
        try:
            while not session.lost and not self._closing:
                await asyncio.sleep(self.heartbeat_interval)
                if session.lost or self._closing:
                    return
                if state["unanswered"] >= MISSED_HEARTBEATS:
                    log.warning("%d heartbeats unanswered; reconnecting", state["unanswered"])
                    self._mark_lost(session, "heartbeats unanswered")
                    await self._close_sio(session.sio)
                    return
                payload: Dict[str, Any] = {"load": int(self._load())} if self.is_component else {}
                env = envelope("heartbeat", payload, "hub")
                future = self._track(env["id"], session)
                sent.append(env["id"])
                state["unanswered"] += 1

                def answered(fut: "asyncio.Future[Any]", hid: str = env["id"]) -> None:
                    if fut.cancelled():
                        return
                    if fut.exception() is not None:
                        return
                    state["unanswered"] = 0
                    while sent:
                        self._untrack(sent.pop())
                    result = fut.result()
                    if self.is_component and isinstance(result, dict) and result.get("registered") is False:
                        # the hub forgot us: register again on a new session
                        self._mark_lost(session, "hub reports this component unregistered")
                        self._spawn(self._close_sio(session.sio))

                future.add_done_callback(answered)
                try:
                    await session.sio.emit("envelope", env)
                except Exception:
                    self._mark_lost(session, "heartbeat could not be sent")
                    return
        except asyncio.CancelledError:
            pass

    # ------------------------------------------------------------------ incoming

    def _track(self, request_id: str, session: _Session) -> "asyncio.Future[Any]":
        future: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._pending_session[request_id] = session.number
        return future

    def _untrack(self, request_id: str) -> None:
        future = self._pending.pop(request_id, None)
        self._pending_session.pop(request_id, None)
        if future is not None and not future.done():
            future.cancel()

    def _fail_pending(self, session_number: Optional[int], error: GleitzeitError) -> None:
        for request_id, future in list(self._pending.items()):
            if session_number is not None and self._pending_session.get(request_id) != session_number:
                continue
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: heartbeats nobody awaits must not warn

    def _on_message(self, session: _Session, event: str, args: Sequence[Any]) -> None:
        """Every Socket.IO event of a session (runs on the receive path: never blocks)."""
        if session is not self._session:
            return
        env = args[0] if args else None
        if not isinstance(env, dict):
            log.debug("ignoring %s without an envelope", event)
            return
        if event in ANSWER_EVENTS:
            future = self._pending.get(env.get("correlation_id") or "")
            if future is not None:
                if not future.done():
                    payload = env.get("payload")
                    if event == "gz_error":
                        future.set_exception(GleitzeitError.from_wire(payload))
                    elif event == "registered":
                        future.set_result(payload if isinstance(payload, dict) else {})
                    elif isinstance(payload, dict) and "error" in payload:
                        future.set_exception(GleitzeitError.from_wire(payload["error"]))
                    elif isinstance(payload, dict):
                        future.set_result(payload.get("ok"))
                    else:
                        future.set_result(payload)
                return
            if event == "reply":
                return  # a late reply: its requester gave up
            if event == "gz_error":
                payload = env.get("payload") or {}
                log.warning("hub error: %s", GleitzeitError.from_wire(payload))
        if event == "hub_shutting_down":
            log.info("the hub is shutting down; reconnecting when it is back")
        assert self._incoming is not None
        self._incoming.put_nowait(env)

    async def _dispatch(self) -> None:
        assert self._incoming is not None
        while True:
            env = await self._incoming.get()
            event = env.get("event", "")
            handlers = self._handlers.get(event) or self._handlers.get("*")
            if not handlers:
                await self._unhandled(env)
                continue
            for handler in list(handlers):
                try:
                    result = handler(env)
                    if inspect.isawaitable(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("handler of %s failed", event)

    async def _unhandled(self, env: Dict[str, Any]) -> None:
        """Components answer requests they do not handle with GZ7021."""
        if not self.is_component or env.get("event") in ANSWER_EVENTS:
            return
        if str(env.get("target", "")).startswith("room:"):
            return
        auth = env.get("auth") or {}
        if auth.get("role") == "HUB":
            return
        try:
            await self.reply(
                env,
                error={
                    "code": "GZ7021",
                    "message": "unknown event %r for %s" % (env.get("event"), self.component_id),
                    "hint": "See docs/protocol.md for the events a task service handles.",
                    "retryable": False,
                },
            )
        except GleitzeitError:
            pass

    async def _answer_ping(self, env: Dict[str, Any]) -> None:
        await self.reply(env, ok={"component_id": self.component_id, "pid": os.getpid()})

    # ------------------------------------------------------------------ helpers

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _call(self, callback: Callable[[], Any]) -> None:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconnect callback failed")


def hostname() -> str:
    """This machine's name (for ``register``)."""
    try:
        return socket.gethostname()
    except OSError:
        return ""
