"""A small synchronous facade for scripts.

:class:`GleitzeitClusterSync` (also ``gleitzeit.sync.Cluster``) runs a
:class:`gleitzeit.GleitzeitCluster` on a private event loop in a background thread and
offers its calls as plain blocking methods::

    from gleitzeit.sync import Cluster

    with Cluster() as cluster:
        results = cluster.run("flow.yaml")

Callbacks given to :meth:`on` run on that background thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

from .cluster import GleitzeitCluster
from .workflow import Workflow

__all__ = ["GleitzeitClusterSync", "Cluster"]

T = TypeVar("T")
WorkflowLike = Union[Workflow, str, Mapping[str, Any]]


class GleitzeitClusterSync:
    """Blocking calls on a :class:`GleitzeitCluster`; connects at construction.

    Takes the arguments of :class:`GleitzeitCluster`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gleitzeit-sync", daemon=True)
        self._thread.start()
        self._closed = False
        self.cluster = GleitzeitCluster(*args, **kwargs)
        try:
            self._run(self.cluster.start())
        except BaseException:
            self._shutdown_loop()
            raise

    def _run(self, coro: Awaitable[T], timeout: Optional[float] = None) -> T:
        if self._closed:
            raise RuntimeError("the cluster is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def create_workflow(self, name: str, **kwargs: Any) -> Workflow:
        return Workflow(name, **kwargs)

    def submit_workflow(self, workflow: WorkflowLike, base_dir: Optional[str] = None) -> str:
        return self._run(self.cluster.submit_workflow(workflow, base_dir=base_dir))

    def wait(self, workflow_id: str, timeout: Optional[float] = None, raise_on_failure: bool = True) -> Dict[str, Any]:
        return self._run(self.cluster.wait(workflow_id, timeout=timeout, raise_on_failure=raise_on_failure))

    def run(self, workflow: WorkflowLike, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Submits and waits: task id → result."""
        return self._run(self.cluster.run(workflow, timeout=timeout))

    def cancel(self, workflow_id: str) -> Dict[str, Any]:
        return self._run(self.cluster.cancel(workflow_id))

    def get_workflow(self, workflow_id: str, summary: bool = False) -> Dict[str, Any]:
        return self._run(self.cluster.get_workflow(workflow_id, summary=summary))

    def list_workflows(self, limit: int = 20, status: Optional[str] = None) -> List[Dict[str, Any]]:
        return self._run(self.cluster.list_workflows(limit=limit, status=status))

    def get_task(self, workflow_id: Optional[str], task_id: str) -> Dict[str, Any]:
        return self._run(self.cluster.get_task(workflow_id, task_id))

    def list_functions(self) -> List[Dict[str, Any]]:
        return self._run(self.cluster.list_functions())

    def list_components(self) -> List[Dict[str, Any]]:
        return self._run(self.cluster.list_components())

    def on(self, event: str, callback: Optional[Callable[..., Any]] = None) -> Any:
        """As :meth:`GleitzeitCluster.on`; the callback runs on the background thread."""
        return self.cluster.on(event, callback)

    def events(self, workflow_id: str, progress: bool = False) -> Iterator[Dict[str, Any]]:
        """As :meth:`GleitzeitCluster.events`, as a plain iterator."""
        agen = self.cluster.events(workflow_id, progress=progress)
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                try:
                    self._run(agen.aclose(), timeout=5)
                except Exception:
                    pass

    def close(self) -> None:
        """Disconnects (and stops a local suite the cluster started). Safe to call twice."""
        if self._closed:
            return
        try:
            self._run(self.cluster.stop(), timeout=60)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "GleitzeitClusterSync":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: Short name: ``from gleitzeit.sync import Cluster``.
Cluster = GleitzeitClusterSync
