"""Gleitzeit's Python SDK: build and run workflows of LLM and Python tasks, follow their
events, and serve Python functions as tasks.

- :class:`GleitzeitCluster` submits workflows, delivers their events, waits for results;
- :class:`Workflow` / :class:`Task` build workflows (and read/write the YAML format);
- ``@gleitzeit_task`` declares functions; :class:`TaskService` (``start_task_service``,
  ``run_task_service``) serves them to workflows;
- :class:`GleitzeitError` carries the ``GZnnnn`` code of every failure.

See ``docs/python.md``.
"""

from ._version import __version__
from .cluster import GleitzeitCluster
from .decorators import gleitzeit_task
from .errors import GleitzeitError
from .service import TaskContext, TaskService, current_task, run_task_service, start_task_service
from .workflow import ITEM, ITEM_INDEX, Task, Workflow

__all__ = [
    "ITEM",
    "ITEM_INDEX",
    "GleitzeitCluster",
    "Workflow",
    "Task",
    "gleitzeit_task",
    "start_task_service",
    "run_task_service",
    "TaskService",
    "TaskContext",
    "GleitzeitError",
    "current_task",
    "__version__",
]
