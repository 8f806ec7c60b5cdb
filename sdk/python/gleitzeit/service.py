"""Task services: serve ``@gleitzeit_task`` functions to workflows as a hub provider.

A :class:`TaskService` registers as component type ``task-service`` (``docs/protocol.md``
§5.7, ``docs/providers.md``): its capabilities are the routing keys
``python/function#f`` and ``python/function#f@<service_name>`` of every function ``f``,
``python/function`` itself, and the open methods its functions declare. It

- holds every task an engine hands over (``execute_tasks``) and runs at most ``capacity``
  at once (sync functions in threads, async ones as asyncio tasks);
- checks ``args``/``kwargs`` against the function's JSON Schema first (GZ7002, the path in
  the message); an unknown function or another service's task is GZ2020; an exception
  GZ2025 with ``details.traceback`` and ``details.exception_type``; a timeout (the task's
  or the function's own, whichever is shorter) GZ2002; a return value that is not JSON GZ2025;
- sends outcomes batched as ``task_outcomes`` to the engine that sent the task, and
  ``tasks_held`` to every engine it holds tasks for every 2 s;
- on ``cancel_tasks`` stops the task (async functions get ``CancelledError``; sync ones see
  ``current_task().cancelled`` turn true) and sends no outcome;
- on ``shutdown`` or :meth:`TaskService.stop` drains: takes no new tasks, waits up to
  ``drain_grace`` seconds for running ones, gives every task still held back as GZ1031
  (run again elsewhere), then deregisters.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import math
import os
import signal
import threading
import time
import traceback
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._version import __version__
from ._wire import Connection, hostname, now_ms
from .credentials import resolve_api_key, resolve_hub_urls
from .decorators import TaskFunction, as_task_functions
from .errors import GleitzeitError
from .schema import validate_call

__all__ = ["TaskService", "TaskContext", "current_task", "start_task_service", "run_task_service"]

log = logging.getLogger("gleitzeit.service")

PYTHON_FUNCTION = "python/function"
COMPONENT_TYPE = "task-service"
#: Seconds between ``tasks_held`` reports.
HELD_INTERVAL = 2.0
#: Outcomes per ``task_outcomes`` message, and about how many bytes.
BATCH_MAX = 256
BATCH_BYTES = 8 * 1024 * 1024
#: Largest result or error of one outcome, as JSON.
OUTCOME_LIMIT = 16 * 1024 * 1024
#: Engines reported to while idle: at most this many, for this long after their last task.
IDLE_ENGINES = 64
IDLE_SECONDS = 60.0
#: Longest task time limit honoured (7 days).
MAX_TIMEOUT = 7 * 24 * 3600.0

_current: "contextvars.ContextVar[Optional[TaskContext]]" = contextvars.ContextVar("gleitzeit_task", default=None)


class TaskContext:
    """What a running task function can learn about its task (``current_task()``)."""

    def __init__(
        self,
        workflow_id: str,
        task_id: str,
        attempt: int,
        method: str,
        function_name: str,
        service_name: str,
        provider_id: str,
        engine_id: str,
        timeout: Optional[float],
    ) -> None:
        self.workflow_id = workflow_id
        self.task_id = task_id
        self.attempt = attempt
        self.method = method
        self.function_name = function_name
        self.service_name = service_name
        self.provider_id = provider_id
        self.engine_id = engine_id
        #: Seconds this attempt may run (None: no limit).
        self.timeout = timeout
        self._cancelled = threading.Event()
        self._progress: Optional[Any] = None  # set by the service: sends task_progress

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, timed out or given back: a sync function that
        runs long should look at it now and then and return early."""
        return self._cancelled.is_set()

    def progress(self, text: str) -> None:
        """Streams a piece of text to whoever follows the workflow (``task_progress`` to the
        rooms ``events`` and ``workflow:<id>``; not kept for catch-up). Callable from sync
        and async functions alike; does nothing once the task was cancelled."""
        if self._progress is not None and not self.cancelled:
            self._progress(str(text))

    def __repr__(self) -> str:
        return "TaskContext(%s/%s attempt %d, %s)" % (self.workflow_id, self.task_id, self.attempt, self.function_name)


def current_task() -> Optional[TaskContext]:
    """The task the calling function runs for (None outside a task service's task)."""
    return _current.get()


def _error(code: str, message: str, retryable: bool = False, hint: Optional[str] = None, details: Any = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
    if hint:
        out["hint"] = hint
    if details is not None:
        out["details"] = details
    return out


class _Held:
    """A task handed over by an engine and not yet answered."""

    __slots__ = (
        "workflow_id",
        "task_id",
        "attempt",
        "method",
        "params",
        "timeout_ms",
        "engine",
        "started_at",
        "running",
        "handle",
        "context",
        "dropped",
    )

    def __init__(self, task: Mapping[str, Any], engine: str) -> None:
        self.workflow_id = str(task.get("workflow_id", ""))
        self.task_id = str(task.get("task_id", ""))
        self.attempt = int(task.get("attempt") or 1)
        self.method = str(task.get("method", ""))
        self.params = task.get("params")
        timeout_ms = task.get("timeout_ms")
        self.timeout_ms = timeout_ms if isinstance(timeout_ms, (int, float)) and timeout_ms > 0 else None
        self.engine = engine
        self.started_at = 0
        self.running = False
        self.handle: Optional["asyncio.Task[None]"] = None
        self.context: Optional[TaskContext] = None
        #: Cancelled or given back: its outcome is not sent.
        self.dropped = False

    @property
    def key(self) -> Tuple[str, str]:
        return (self.workflow_id, self.task_id)


class TaskService:
    """Serves Python functions to workflows (see the module doc).

    ``functions``: None for every ``@gleitzeit_task`` function declared when :meth:`start`
    runs, or a list of functions (decorated or plain), or a dict name → function.
    """

    def __init__(
        self,
        service_name: str = "Python Tasks",
        hub_url: Union[None, str, Sequence[str]] = None,
        api_key: Optional[str] = None,
        capacity: int = 4,
        functions: Union[None, Iterable[Any], Mapping[str, Any]] = None,
        component_id: Optional[str] = None,
        drain_grace: float = 3.0,
    ) -> None:
        if not isinstance(service_name, str) or not service_name or "@" in service_name or "#" in service_name:
            raise ValueError("service_name must be a non-empty string without '@' or '#'")
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError("capacity must be a positive integer")
        if not (0 <= drain_grace <= 3600):
            raise ValueError("drain_grace must be 0 to 3600 seconds")
        self.service_name = service_name
        self.hub_urls = resolve_hub_urls(hub_url)
        self._api_key = api_key
        self.capacity = capacity
        self._functions_arg = functions
        self.component_id = component_id or "task-service-%s" % uuid.uuid4().hex[:8]
        self.drain_grace = float(drain_grace)
        self.functions: List[TaskFunction] = []
        self._by_name: Dict[str, TaskFunction] = {}
        self._by_method: Dict[str, TaskFunction] = {}
        self._conn: Optional[Connection] = None
        self._held: Dict[Tuple[str, str], _Held] = {}
        self._engines: Dict[str, float] = {}
        self._outcomes: Dict[str, List[Dict[str, Any]]] = {}
        self._flush_scheduled = False
        self._flushing: Optional["asyncio.Task[None]"] = None
        self._running = 0
        self._slots: Optional[asyncio.Semaphore] = None
        self._draining = False
        self._stopped: Optional[asyncio.Event] = None
        self._stop_task: Optional["asyncio.Task[None]"] = None
        self._reporter: Optional["asyncio.Task[None]"] = None
        self._background: "set[asyncio.Task[Any]]" = set()
        #: Counters, for people and tests.
        self.stats = {"received": 0, "completed": 0, "failed": 0, "cancelled": 0, "given_back": 0}

    # ------------------------------------------------------------------ declaration

    def capabilities(self) -> List[str]:
        """The routing keys this service registers (``docs/protocol.md`` §5.7)."""
        caps = [PYTHON_FUNCTION]
        for f in self.functions:
            caps.append("%s#%s" % (PYTHON_FUNCTION, f.name))
            caps.append("%s#%s@%s" % (PYTHON_FUNCTION, f.name, self.service_name))
        for method in self._by_method:
            if method not in caps:
                caps.append(method)
        return caps

    def metadata(self) -> Dict[str, Any]:
        """Registration metadata: the service, its functions and open methods."""
        return {
            "service_name": self.service_name,
            "functions": [f.declaration(self.service_name) for f in self.functions],
            "methods": [f.method_declaration() for f in self.functions if f.method is not None],
            "sdk": "gleitzeit-python %s" % __version__,
        }

    def _register_payload(self) -> Dict[str, Any]:
        return {
            "component_type": COMPONENT_TYPE,
            "component_id": self.component_id,
            "capabilities": self.capabilities(),
            "capacity": self.capacity,
            "load": self._running,
            "version": __version__,
            "host": hostname(),
            "pid": os.getpid(),
            "metadata": self.metadata(),
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def running_tasks(self) -> int:
        return self._running

    @property
    def held_tasks(self) -> int:
        return len(self._held)

    @property
    def connection(self) -> Optional[Connection]:
        return self._conn

    async def start(self, retry_forever: bool = True) -> "TaskService":
        """Connects and registers; returns once registered. A refused key raises at once;
        an unreachable hub is retried (forever unless ``retry_forever=False``)."""
        if self._conn is not None:
            return self
        self.functions = as_task_functions(self._functions_arg)
        if not self.functions:
            raise ValueError("no functions to serve: declare some with @gleitzeit_task or pass functions=")
        self._by_name = {f.name: f for f in self.functions}
        self._by_method = {f.method: f for f in self.functions if f.method is not None}
        self._slots = asyncio.Semaphore(self.capacity)
        self._stopped = asyncio.Event()
        key = resolve_api_key(self._api_key)
        conn = Connection(self.hub_urls, key, register=self._register_payload, load=lambda: self._running)
        conn.on("execute_tasks", self._on_execute)
        conn.on("cancel_tasks", self._on_cancel)
        conn.on("shutdown", self._on_shutdown)
        await conn.connect(retry_forever=retry_forever)
        self._conn = conn
        self._reporter = asyncio.ensure_future(self._report_held())
        log.info(
            "task service %r registered as %s with %d function(s)", self.service_name, self.component_id, len(self.functions)
        )
        return self

    async def stop(self) -> None:
        """Drains (see the module doc), deregisters and disconnects. Safe to call twice."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._drain_and_close())
        await asyncio.shield(self._stop_task)

    async def wait_stopped(self) -> None:
        """Returns when the service stopped (e.g. the hub sent ``shutdown``)."""
        if self._stopped is None:
            return
        await self._stopped.wait()

    async def __aenter__(self) -> "TaskService":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _drain_and_close(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_grace
        while self._running > 0 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        # whatever is still held goes back to its engine: it runs again elsewhere
        for held in list(self._held.values()):
            held.dropped = True
            if held.context is not None:
                held.context._cancelled.set()
            if held.handle is not None and not held.handle.done():
                held.handle.cancel()
            self._held.pop(held.key, None)
            self.stats["given_back"] += 1
            self._add_outcome(
                held,
                error=_error(
                    "GZ1031",
                    "task service %s stopped before the task finished" % self.component_id,
                    retryable=True,
                    hint="The task is queued again and runs on another provider.",
                ),
            )
        await self._flush()
        if self._reporter is not None:
            self._reporter.cancel()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await conn.close(deregister=True)
        self._conn = None
        assert self._stopped is not None
        self._stopped.set()
        log.info("task service %s stopped", self.component_id)

    # ------------------------------------------------------------------ incoming

    def _on_shutdown(self, env: Dict[str, Any]) -> None:
        log.info("the hub asked %s to shut down", self.component_id)
        self._spawn(self.stop())

    def _on_execute(self, env: Dict[str, Any]) -> None:
        engine = env.get("source")
        payload = env.get("payload")
        tasks = payload.get("tasks") if isinstance(payload, dict) else None
        if not engine or not isinstance(tasks, list):
            log.warning("malformed execute_tasks from %s dropped", engine)
            return
        self._engines[engine] = time.monotonic()
        for task in tasks:
            if not isinstance(task, dict):
                continue
            held = _Held(task, engine)
            old = self._held.get(held.key)
            if old is not None:
                if old.attempt >= held.attempt:
                    continue  # the same attempt again
                old.dropped = True
                if old.handle is not None:
                    old.handle.cancel()
            self._held[held.key] = held
            self.stats["received"] += 1
            if not self._draining:
                held.handle = asyncio.ensure_future(self._run(held))

    def _on_cancel(self, env: Dict[str, Any]) -> None:
        payload = env.get("payload")
        tasks = payload.get("tasks") if isinstance(payload, dict) else None
        if not isinstance(tasks, list):
            return
        for item in tasks:
            if not isinstance(item, dict):
                continue
            key = (str(item.get("workflow_id", "")), str(item.get("task_id", "")))
            held = self._held.pop(key, None)
            if held is None:
                continue
            held.dropped = True
            self.stats["cancelled"] += 1
            if held.context is not None:
                held.context._cancelled.set()
            if held.handle is not None and not held.handle.done():
                held.handle.cancel()
            log.info("task %s/%s cancelled", key[0], key[1])

    # ------------------------------------------------------------------ running

    async def _run(self, held: _Held) -> None:
        assert self._slots is not None
        try:
            async with self._slots:
                if held.dropped or self._draining:
                    return  # given back when the drain ends
                held.running = True
                held.started_at = now_ms()
                self._running += 1
                try:
                    result, error = await self._execute(held)
                finally:
                    self._running -= 1
                    held.running = False
        except asyncio.CancelledError:
            return
        if held.dropped:
            return
        if error is not None:
            self.stats["failed"] += 1
        else:
            self.stats["completed"] += 1
        if self._held.get(held.key) is held:
            del self._held[held.key]
            self._add_outcome(held, result=result, error=error)

    def _resolve(self, held: _Held) -> Tuple[Optional[TaskFunction], List[Any], Dict[str, Any], Optional[Dict[str, Any]]]:
        """The function, args and kwargs of a task, or the error that stops it."""
        params = held.params if held.params is not None else {}
        if not isinstance(params, dict):
            return None, [], {}, _error("GZ7002", "params: %s is not of type \"object\"" % json.dumps(params)[:60])
        if held.method == PYTHON_FUNCTION:
            name = params.get("function_name")
            if not isinstance(name, str) or not name:
                return None, [], {}, _error("GZ7002", 'params: "function_name" is a required property (a string)')
            for key in params:
                if key not in ("function_name", "args", "kwargs", "service_name", "timeout"):
                    return None, [], {}, _error("GZ7002", 'params: additional property "%s" is not allowed' % key)
            service = params.get("service_name")
            if service is not None and service != self.service_name:
                return None, [], {}, _error(
                    "GZ2020",
                    "function %s of the service %r is not served here (this is the service %r)"
                    % (name, service, self.service_name),
                    hint="Start a task service of that name declaring the function.",
                )
            fn = self._by_name.get(name)
            if fn is None:
                return None, [], {}, _error(
                    "GZ2020",
                    "function %s is not declared by the task service %r (%s)" % (name, self.service_name, self.component_id),
                    hint="Declare it with @gleitzeit_task in a running task service; `gz functions list` shows what is served.",
                )
            args = params.get("args")
            kwargs = params.get("kwargs")
            if args is None:
                args = []
            if kwargs is None:
                kwargs = {}
            if not isinstance(args, list):
                return fn, [], {}, _error("GZ7002", 'args: %s is not of type "array"' % json.dumps(args)[:60])
            if not isinstance(kwargs, dict):
                return fn, [], {}, _error("GZ7002", 'kwargs: %s is not of type "object"' % json.dumps(kwargs)[:60])
            return fn, args, kwargs, None
        fn = self._by_method.get(held.method)
        if fn is None:
            return None, [], {}, _error(
                "GZ7003", "method %s is not served by the task service %s" % (held.method, self.component_id)
            )
        return fn, [], dict(params), None

    async def _execute(self, held: _Held) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        fn, args, kwargs, problem = self._resolve(held)
        if problem is not None or fn is None:
            return None, problem
        violation = validate_call(fn.func, fn.parameters, args, kwargs)
        if violation is not None:
            return None, _error(
                "GZ7002",
                violation,
                hint="Check the arguments against the function's parameters (`gz functions list`).",
            )
        own = held.params.get("timeout") if held.method == PYTHON_FUNCTION and isinstance(held.params, dict) else None
        if not isinstance(own, (int, float)) or isinstance(own, bool) or not own > 0:
            own = None
        limits = [t for t in (held.timeout_ms / 1000.0 if held.timeout_ms else None, fn.timeout, own) if t]
        timeout = min(min(limits), MAX_TIMEOUT) if limits else None
        ctx = TaskContext(
            held.workflow_id,
            held.task_id,
            held.attempt,
            held.method,
            fn.name,
            self.service_name,
            self.component_id,
            held.engine,
            timeout,
        )
        ctx._progress = self._progress_sender(held, asyncio.get_running_loop())
        held.context = ctx
        started = time.monotonic()
        try:
            if fn.is_async:
                value = await self._run_async(fn, args, kwargs, ctx, timeout)
            else:
                value = await self._run_sync(fn, args, kwargs, ctx, timeout)
        except asyncio.TimeoutError:
            ctx._cancelled.set()
            return None, _error(
                "GZ2002",
                "%s did not finish within %.3g s" % (fn.name, timeout or 0),
                retryable=True,
                hint="Raise the task's `timeout` (or the function's own), or make the work faster.",
            )
        except asyncio.CancelledError:
            ctx._cancelled.set()
            raise
        except Exception as exc:  # the function raised
            return None, _error(
                "GZ2025",
                "%s raised %s: %s" % (fn.name, type(exc).__name__, exc),
                hint="Read the traceback in the task's error.",
                details={
                    "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                    "exception_type": type(exc).__name__,
                },
            )
        elapsed = time.monotonic() - started
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return None, _error(
                "GZ2025",
                "%s returned a value that is not JSON (%s): %s" % (fn.name, type(value).__name__, exc),
                hint="Return str, numbers, bools, None, lists and dicts with string keys.",
                details={"exception_type": "TypeError", "traceback": ""},
            )
        if len(text) > OUTCOME_LIMIT:
            return None, _error(
                "GZ2026",
                "%s returned %d bytes of JSON, more than %d" % (fn.name, len(text), OUTCOME_LIMIT),
                hint="Return less data (write large results to a file and return its path).",
                details={"truncated_output": text[:65536] + "…[truncated]"},
            )
        return {"result": json.loads(text), "success": True, "execution_time": elapsed}, None

    async def _run_async(
        self, fn: TaskFunction, args: List[Any], kwargs: Dict[str, Any], ctx: TaskContext, timeout: Optional[float]
    ) -> Any:
        async def call() -> Any:
            _current.set(ctx)
            return await fn.func(*args, **kwargs)

        inner = asyncio.ensure_future(call())
        try:
            if timeout is None:
                return await inner
            return await asyncio.wait_for(inner, timeout)
        finally:
            if not inner.done():
                inner.cancel()

    async def _run_sync(
        self, fn: TaskFunction, args: List[Any], kwargs: Dict[str, Any], ctx: TaskContext, timeout: Optional[float]
    ) -> Any:
        """Runs a sync function in a daemon thread of its own (a function that never returns
        cannot keep the process from exiting)."""
        loop = asyncio.get_running_loop()
        done: "asyncio.Future[Any]" = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if done.done():
                return
            if ok:
                done.set_result(value)
            else:
                done.set_exception(value)

        def body() -> None:
            _current.set(ctx)
            try:
                value = fn.func(*args, **kwargs)
                ok, out = True, value
            except BaseException as exc:  # reported as the task's error
                ok, out = False, exc
            try:
                loop.call_soon_threadsafe(settle, ok, out)
            except RuntimeError:
                pass  # the loop is gone: nobody waits any more

        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(body,), name="gleitzeit-task-%s" % ctx.task_id, daemon=True
        )
        thread.start()
        if timeout is None:
            return await asyncio.shield(done)
        return await asyncio.wait_for(asyncio.shield(done), timeout)

    # ------------------------------------------------------------------ outgoing

    def _progress_sender(self, held: _Held, loop: asyncio.AbstractEventLoop) -> Any:
        payload = {"workflow_id": held.workflow_id, "task_id": held.task_id, "attempt": held.attempt}
        target = "room:events,workflow:%s" % held.workflow_id

        def send(text: str) -> None:
            conn = self._conn
            if conn is None:
                return
            body = dict(payload, text=text)

            def go() -> None:
                self._spawn(conn.send("task_progress", body, target))

            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                go()
            else:
                try:
                    loop.call_soon_threadsafe(go)
                except RuntimeError:
                    pass  # the loop is closed

        return send

    def _add_outcome(
        self, held: _Held, result: Optional[Dict[str, Any]] = None, error: Optional[Dict[str, Any]] = None
    ) -> None:
        outcome: Dict[str, Any] = {
            "workflow_id": held.workflow_id,
            "task_id": held.task_id,
            "attempt": held.attempt,
            "provider_id": self.component_id,
            "started_at": held.started_at,
            "finished_at": now_ms(),
        }
        if error is not None:
            outcome["error"] = error
        else:
            outcome["result"] = result
        self._engines[held.engine] = time.monotonic()
        self._outcomes.setdefault(held.engine, []).append(outcome)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: self._spawn(self._flush()))

    async def _flush(self) -> None:
        """Sends what finished meanwhile: one message per engine (≤ 256 outcomes, ~8 MiB)."""
        self._flush_scheduled = False
        conn = self._conn
        if conn is None:
            return
        outcomes, self._outcomes = self._outcomes, {}
        for engine, items in outcomes.items():
            batch: List[Dict[str, Any]] = []
            size = 0
            for outcome in items:
                n = len(json.dumps(outcome))
                if batch and (len(batch) >= BATCH_MAX or size + n > BATCH_BYTES):
                    await self._send_outcomes(conn, engine, batch)
                    batch, size = [], 0
                batch.append(outcome)
                size += n
            if batch:
                await self._send_outcomes(conn, engine, batch)

    async def _send_outcomes(self, conn: Connection, engine: str, batch: List[Dict[str, Any]]) -> None:
        try:
            await conn.send("task_outcomes", {"outcomes": batch}, "component:%s" % engine)
        except GleitzeitError as err:
            # the engine learns from tasks_held that these are no longer held: they run again
            log.warning("%d outcome(s) for %s could not be sent: %s", len(batch), engine, err)

    async def _report_held(self) -> None:
        """``tasks_held`` every 2 s to every engine holding tasks here (and, for a minute
        after their last task, to at most 64 idle ones)."""
        try:
            while True:
                await asyncio.sleep(HELD_INTERVAL)
                conn = self._conn
                if conn is None or not conn.connected:
                    continue
                by_engine: Dict[str, List[Dict[str, Any]]] = {}
                for held in self._held.values():
                    by_engine.setdefault(held.engine, []).append(
                        {"workflow_id": held.workflow_id, "task_id": held.task_id, "attempt": held.attempt}
                    )
                now = time.monotonic()
                idle = sorted(
                    (e for e in self._engines if e not in by_engine), key=lambda e: self._engines[e], reverse=True
                )
                for engine in idle[IDLE_ENGINES:]:
                    self._engines.pop(engine, None)
                for engine in idle[:IDLE_ENGINES]:
                    if now - self._engines[engine] > IDLE_SECONDS:
                        self._engines.pop(engine, None)
                    else:
                        by_engine[engine] = []
                for engine, tasks in by_engine.items():
                    try:
                        await conn.send("tasks_held", {"tasks": tasks}, "component:%s" % engine)
                    except GleitzeitError:
                        break
        except asyncio.CancelledError:
            pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def start_task_service(
    service_name: str = "Python Tasks",
    hub_url: Union[None, str, Sequence[str]] = None,
    api_key: Optional[str] = None,
    capacity: int = 4,
    functions: Union[None, Iterable[Any], Mapping[str, Any]] = None,
    **options: Any,
) -> TaskService:
    """Starts a :class:`TaskService` and returns it once registered (``await service.stop()``
    to end it). ``options``: ``component_id``, ``drain_grace``."""
    service = TaskService(
        service_name=service_name, hub_url=hub_url, api_key=api_key, capacity=capacity, functions=functions, **options
    )
    await service.start()
    return service


def run_task_service(
    service_name: str = "Python Tasks",
    hub_url: Union[None, str, Sequence[str]] = None,
    api_key: Optional[str] = None,
    capacity: int = 4,
    functions: Union[None, Iterable[Any], Mapping[str, Any]] = None,
    **options: Any,
) -> None:
    """Runs a task service until SIGINT/SIGTERM (or ``shutdown`` from the hub), then drains
    and stops it cleanly. Blocks."""

    async def main() -> None:
        service = TaskService(
            service_name=service_name, hub_url=hub_url, api_key=api_key, capacity=capacity, functions=functions, **options
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            await service.start()
            stopped = asyncio.ensure_future(service.wait_stopped())
            asked = asyncio.ensure_future(stop.wait())
            await asyncio.wait([stopped, asked], return_when=asyncio.FIRST_COMPLETED)
            for t in (stopped, asked):
                t.cancel()
        finally:
            await service.stop()
            for sig in installed:
                loop.remove_signal_handler(sig)

    asyncio.run(main())
