"""Workflows built in Python, read from and written to the YAML format of ``docs/workflows.md``.

A :class:`Workflow` holds :class:`Task` objects. The ``add_*`` helpers build the methods of
``protocols/*.yaml`` (``llm/chat``, ``llm/vision``) and of task services
(``python/function``, ``docs/protocol.md`` §5.7). Each task gets an id made from its name
(a slug that stays unique) and keeps the name as given, so both ``${id.result}`` and the
original ``{{Task Name.result}}`` references work, and dependencies may name tasks by id,
by name, or by the :class:`Task` object.

``to_dict()`` is at once a valid YAML document (``to_yaml()``, accepted by ``gz validate``)
and the JSON ``spec`` the queue-manager takes in ``workflow_submit``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import yaml

from .errors import GleitzeitError

__all__ = ["Task", "Workflow", "DEFAULT_TEXT_MODEL", "DEFAULT_VISION_MODEL"]

#: Model of ``add_text_task`` when none is given (the same as the YAML reader's).
DEFAULT_TEXT_MODEL = "llama3.2:latest"
#: Model of ``add_vision_task`` when none is given (the default of ``protocols/llm.yaml``).
DEFAULT_VISION_MODEL = "llava:latest"

PRIORITY_WORDS = ("low", "normal", "high", "urgent")
#: Characters a task id may not contain (references could not name it).
FORBIDDEN_ID_CHARS = set(".[]{}$")
WORKFLOW_KEYS = (
    "id", "name", "description", "metadata", "tasks", "timeout", "on_failure", "version", "wait_for_completion", "attachments",
)
TASK_KEYS = (
    "id", "name", "method", "protocol", "parameters", "params", "dependencies", "priority", "timeout",
    "retry", "files", "tolerate_failures", "batch",
)
#: In the parameters of a fan-out task (``batch=``): the current item, and its position from 0.
ITEM = "${item}"
ITEM_INDEX = "${item_index}"
RETRY_KEYS = ("max_attempts", "backoff", "base_delay", "max_delay", "jitter")

#: The original's task dialect (``type:`` with the fields at the task's top level), as the
#: YAML reader normalises it (``crates/workflow/src/dialect.rs``, ``docs/workflows.md``):
#: type → (method, the top-level fields taken into the parameters).
DIALECT_TYPES = {
    "text": ("llm/chat", ("prompt", "system", "model", "temperature", "max_tokens", "stream", "file_path", "options", "tags")),
    "vision": ("llm/vision", ("prompt", "model", "image_path", "image_paths", "images", "temperature", "max_tokens", "options", "tags")),
    "function": ("python/function", ("function_name", "args", "kwargs", "service_name")),
    "python": ("python/execute", ("code", "file", "context", "cwd")),
    "http": ("http/request", ("url", "http_method", "headers", "query", "json", "body", "expected_status", "response_type", "max_bytes")),
}
DIALECT_ALIASES = {"llm": "text", "chat": "text"}
DIALECT_FIELDS = {f for _, fields in DIALECT_TYPES.values() for f in fields}

Dependency = Union["Task", str]


def _invalid(message: str, hint: Optional[str] = None, code: str = "GZ7001") -> GleitzeitError:
    return GleitzeitError(code, message, hint=hint)


def slugify(name: str) -> str:
    """A task id made from a name: lower case, runs of anything but letters, digits, ``_``
    and ``-`` become one ``-``; ``task`` when nothing is left."""
    out = []
    dash = False
    for ch in name.strip().lower():
        if ch.isalnum() or ch == "_":
            out.append(ch)
            dash = False
        elif not dash:
            out.append("-")
            dash = True
    slug = "".join(out).strip("-")
    return slug or "task"


def check_id(task_id: str) -> None:
    """Raises GZ7001 when ``task_id`` could not be used in references."""
    if not isinstance(task_id, str) or not task_id:
        raise _invalid("a task id must be a non-empty string")
    if task_id.strip() != task_id or FORBIDDEN_ID_CHARS.intersection(task_id):
        raise _invalid(
            "task id %r cannot be used in references" % task_id,
            "ids may not contain `.`, `[`, `]`, `{`, `}` or `$`, nor start or end with spaces",
        )


def _normalize_priority(priority: Any) -> Any:
    if priority is None:
        return None
    if isinstance(priority, bool):
        raise _invalid("priority must be low, normal, high, urgent or an integer 1-4, not %r" % priority)
    if isinstance(priority, int):
        return priority
    if isinstance(priority, str) and priority.strip().lower() in PRIORITY_WORDS:
        return priority.strip().lower()
    raise _invalid(
        "priority must be low, normal, high, urgent or an integer 1-4, not %r" % (priority,),
        "larger is more urgent: 1 = low, 2 = normal, 3 = high, 4 = urgent",
    )


def _normalize_retry(retry: Any) -> Optional[Dict[str, Any]]:
    """``retry: N`` or a mapping, as an explicit mapping (``max_attempts`` 3 when a mapping
    leaves it out, as the YAML reader does)."""
    if retry is None:
        return None
    if isinstance(retry, bool):
        raise _invalid("retry must be a number of attempts or a mapping, not %r" % retry)
    if isinstance(retry, int):
        return {"max_attempts": retry}
    if isinstance(retry, Mapping):
        unknown = [k for k in retry if k not in RETRY_KEYS]
        if unknown:
            raise _invalid("unknown key %r in retry" % unknown[0], "retry keys: %s" % ", ".join(RETRY_KEYS))
        out = dict(retry)
        out.setdefault("max_attempts", 3)
        return out
    raise _invalid("retry must be a number of attempts or a mapping, not %r" % (retry,))


class Task:
    """One task: a method call with parameters."""

    def __init__(
        self,
        id: str,
        name: str,
        method: str,
        parameters: Optional[Dict[str, Any]] = None,
        dependencies: Optional[Sequence[Dependency]] = None,
        priority: Any = None,
        timeout: Optional[float] = None,
        retry: Any = None,
        protocol: Optional[str] = None,
        files: Optional[Mapping[str, Any]] = None,
        tolerate_failures: bool = False,
        batch: Any = None,
    ) -> None:
        check_id(id)
        if not isinstance(method, str) or not method:
            raise _invalid("task %r has no method" % name)
        if parameters is not None and not isinstance(parameters, Mapping):
            raise _invalid("the parameters of task %r must be a mapping" % name)
        self.id = id
        self.name = name
        self.method = method
        self.parameters: Dict[str, Any] = dict(parameters or {})
        self.dependencies: List[Dependency] = list(_as_list(dependencies))
        self.priority = _normalize_priority(priority)
        self.timeout = timeout
        self.retry = _normalize_retry(retry)
        self.protocol = protocol
        #: Files the task names that travel with the workflow: path → digest in the
        #: workflow's ``attachments`` (filled in at submit, see :mod:`gleitzeit.attachments`).
        self.files: Dict[str, Any] = dict(files or {})
        #: Runs once its dependencies ended, whether they completed or not.
        self.tolerate_failures = bool(tolerate_failures)
        #: Fan-out (``{"from": "${list.result}", "max_items": N, "fail_fast": bool}``): one
        #: task per item of the list, made at run time; see ``docs/workflows.md``.
        self.batch = _fan_out(batch, name)

    def ref(self, path: str = "result") -> str:
        """A reference to this task's result for another task's parameters,
        e.g. ``task.ref()`` → ``${id.result}``, ``task.ref("result.rows")``."""
        return "${%s.%s}" % (self.id, path) if path else "${%s}" % self.id

    def to_dict(self, resolve: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """The task as in a workflow file; ``resolve`` maps names to ids for dependencies."""
        out: Dict[str, Any] = {"id": self.id, "name": self.name, "method": self.method}
        if self.protocol:
            out["protocol"] = self.protocol
        out["parameters"] = _plain(self.parameters)
        deps = []
        for dep in self.dependencies:
            dep_id = dep.id if isinstance(dep, Task) else str(dep)
            if resolve is not None:
                dep_id = resolve.get(dep_id, dep_id)
            if dep_id not in deps:
                deps.append(dep_id)
        if deps:
            out["dependencies"] = deps
        if self.priority is not None:
            out["priority"] = self.priority
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.retry is not None:
            out["retry"] = dict(self.retry)
        if self.files:
            out["files"] = _plain(self.files)
        if self.tolerate_failures:
            out["tolerate_failures"] = True
        if self.batch is not None:
            out["batch"] = dict(self.batch)
        return out

    def __repr__(self) -> str:
        return "Task(id=%r, name=%r, method=%r)" % (self.id, self.name, self.method)


def _fan_out(batch: Any, name: str) -> Optional[Dict[str, Any]]:
    """A task's ``batch``: a :class:`Task` (fan out over its result), a reference string,
    or a mapping with ``from`` (and ``max_items``, ``fail_fast``)."""
    if batch is None:
        return None
    if isinstance(batch, Task):
        return {"from": batch.ref()}
    if isinstance(batch, str):
        return {"from": batch}
    if isinstance(batch, Mapping) and isinstance(batch.get("from"), (str, Task)):
        unknown = [k for k in batch if k not in ("from", "max_items", "fail_fast")]
        if unknown:
            raise _invalid("unknown key %r in the batch of task %r (from, max_items, fail_fast)" % (unknown[0], name))
        out = dict(batch)
        if isinstance(out["from"], Task):
            out["from"] = out["from"].ref()
        return out
    raise _invalid(
        "the batch of task %r must name a list: a task, \"${list.result}\" or {\"from\": ...}" % name
    )


def _as_list(value: Any) -> Iterable[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Task)):
        return [value]
    return list(value)


def _plain(value: Any) -> Any:
    """A copy made of JSON types only (tuples become lists); raises on what JSON cannot hold."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Task):
        return value.ref()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise _invalid("parameter value %r is not JSON (use str, numbers, bools, lists, dicts)" % (value,))


class Workflow:
    """A workflow: named tasks and the dependencies between them."""

    def __init__(
        self,
        name: str,
        description: Optional[str] = None,
        timeout: Optional[float] = None,
        on_failure: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise _invalid("a workflow needs a name")
        if on_failure is not None and on_failure not in ("fail", "continue"):
            raise _invalid("on_failure must be `fail` or `continue`, not %r" % (on_failure,))
        self.name = name
        self.description = description
        self.timeout = timeout
        self.on_failure = on_failure
        self.metadata = metadata
        self.tasks: List[Task] = []
        #: Folder relative paths resolve against (the YAML file's folder when read from one);
        #: the files tasks name are read from it at submit and travel with the workflow.
        self.base_dir: Optional[str] = None
        #: Contents of the files tasks name, by digest (filled in at submit).
        self.attachments: Dict[str, Any] = {}

    # ------------------------------------------------------------------ building

    def _new_id(self, name: str) -> str:
        taken = {t.id for t in self.tasks}
        base = slugify(name)
        candidate = base
        n = 1
        while candidate in taken:
            n += 1
            candidate = "%s-%d" % (base, n)
        return candidate

    def add_task(
        self,
        name: str,
        method: str,
        parameters: Optional[Dict[str, Any]] = None,
        dependencies: Optional[Sequence[Dependency]] = None,
        priority: Any = None,
        timeout: Optional[float] = None,
        retry: Any = None,
        id: Optional[str] = None,
        protocol: Optional[str] = None,
        tolerate_failures: bool = False,
        batch: Any = None,
    ) -> Task:
        """Adds a task of any method (including open methods of task services).

        ``batch=`` makes it a fan-out: one task per item of a list an earlier task returns
        (``batch=list_task``, ``batch="${list.result.items}"`` or ``batch={"from": ...,
        "max_items": 500, "fail_fast": False}``), with :data:`ITEM` and :data:`ITEM_INDEX`
        in ``parameters``; its result is then the list of the items' results.
        ``tolerate_failures=True`` runs the task even when dependencies failed."""
        if not isinstance(name, str) or not name:
            raise _invalid("a task needs a name")
        if id is not None:
            check_id(id)
            if any(t.id == id for t in self.tasks):
                raise _invalid("duplicate task id %r" % id, code="GZ3001")
        task = Task(
            id=id or self._new_id(name),
            name=name,
            method=method,
            parameters=parameters,
            dependencies=dependencies,
            priority=priority,
            timeout=timeout,
            retry=retry,
            protocol=protocol,
            tolerate_failures=tolerate_failures,
            batch=batch,
        )
        self.tasks.append(task)
        return task

    def add_text_task(
        self,
        name: str,
        prompt: Optional[str] = None,
        model: Optional[str] = None,
        dependencies: Optional[Sequence[Dependency]] = None,
        system: Optional[str] = None,
        temperature: Optional[float] = None,
        priority: Any = None,
        timeout: Optional[float] = None,
        retry: Any = None,
        **opts: Any,
    ) -> Task:
        """An ``llm/chat`` task: ``prompt`` becomes the user message (``system`` a system
        message before it). Further ``llm/chat`` parameters (``max_tokens``, ``tags``,
        ``options``, ``format``, ``stream``, ``file_path``, ``messages``) pass through ``opts``."""
        messages = opts.pop("messages", None)
        if messages is None:
            if prompt is None:
                raise _invalid("add_text_task(%r) needs a prompt (or messages)" % name)
            messages = []
            if system is not None:
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": prompt})
        params: Dict[str, Any] = {"model": model or DEFAULT_TEXT_MODEL, "messages": messages}
        if temperature is not None:
            params["temperature"] = temperature
        params.update(opts)
        return self.add_task(
            name, "llm/chat", params, dependencies, priority=priority, timeout=timeout, retry=retry
        )

    def add_vision_task(
        self,
        name: str,
        prompt: Optional[str] = None,
        image_paths: Optional[Sequence[str]] = None,
        image_path: Optional[str] = None,
        model: Optional[str] = None,
        dependencies: Optional[Sequence[Dependency]] = None,
        priority: Any = None,
        timeout: Optional[float] = None,
        retry: Any = None,
        **opts: Any,
    ) -> Task:
        """An ``llm/vision`` task: every image of ``image_path``, ``image_paths`` and
        ``images`` (base64, through ``opts``) is sent; relative paths resolve against the
        workflow's folder."""
        params: Dict[str, Any] = {"model": model or DEFAULT_VISION_MODEL}
        if prompt is not None:
            params["prompt"] = prompt
        if image_path is not None:
            params["image_path"] = os.fspath(image_path)
        if image_paths is not None:
            params["image_paths"] = [os.fspath(p) for p in _as_list(image_paths)]
        params.update(opts)
        if "prompt" not in params and "messages" not in params:
            raise _invalid("add_vision_task(%r) needs a prompt (or messages)" % name)
        return self.add_task(
            name, "llm/vision", params, dependencies, priority=priority, timeout=timeout, retry=retry
        )

    def add_python_task(
        self,
        name: str,
        function_name: str,
        args: Optional[Sequence[Any]] = None,
        kwargs: Optional[Dict[str, Any]] = None,
        dependencies: Optional[Sequence[Dependency]] = None,
        service_name: Optional[str] = None,
        timeout: Optional[float] = None,
        retry: Any = None,
        priority: Any = None,
    ) -> Task:
        """A ``python/function`` task: calls a function declared by a task service (or one of
        the python-provider's built-in functions) with ``args`` and ``kwargs``; with
        ``service_name`` only a provider of that service may run it."""
        if not isinstance(function_name, str) or not function_name:
            raise _invalid("add_python_task(%r) needs a function_name" % name)
        params: Dict[str, Any] = {"function_name": function_name}
        if args is not None:
            params["args"] = list(args)
        if kwargs is not None:
            params["kwargs"] = dict(kwargs)
        if service_name is not None:
            params["service_name"] = service_name
        return self.add_task(
            name, "python/function", params, dependencies, priority=priority, timeout=timeout, retry=retry
        )

    def add_external_task(
        self,
        name: str,
        service_name: str,
        external_parameters: Dict[str, Any],
        dependencies: Optional[Sequence[Dependency]] = None,
        timeout: Optional[float] = None,
        retry: Any = None,
        priority: Any = None,
    ) -> Task:
        """The original's external task: ``external_parameters["function_name"]`` names the
        function, its ``args``/``kwargs`` keys are passed as such and every other key becomes
        a keyword argument; only a provider of ``service_name`` runs it."""
        params = dict(external_parameters or {})
        function_name = params.pop("function_name", None)
        if not function_name:
            raise _invalid("add_external_task(%r): external_parameters needs a function_name" % name)
        args = params.pop("args", None)
        kwargs = dict(params.pop("kwargs", None) or {})
        kwargs.update(params)
        return self.add_python_task(
            name,
            function_name=function_name,
            args=args,
            kwargs=kwargs or None,
            dependencies=dependencies,
            service_name=service_name,
            timeout=timeout,
            retry=retry,
            priority=priority,
        )

    # ------------------------------------------------------------------ reading

    def get_task(self, key: Union[str, Task]) -> Optional[Task]:
        """The task with this id (or, failing that, this name)."""
        if isinstance(key, Task):
            return key if key in self.tasks else None
        for t in self.tasks:
            if t.id == key:
                return t
        for t in self.tasks:
            if t.name == key:
                return t
        return None

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __repr__(self) -> str:
        return "Workflow(name=%r, tasks=%d)" % (self.name, len(self.tasks))

    # ------------------------------------------------------------------ output

    def to_dict(self) -> Dict[str, Any]:
        """The workflow as a plain dict (the YAML format, and the JSON spec of ``workflow_submit``)."""
        ids = {t.id for t in self.tasks}
        resolve: Dict[str, str] = {}
        for t in self.tasks:
            if t.name not in ids and t.name not in resolve:
                resolve[t.name] = t.id
        out: Dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.on_failure is not None:
            out["on_failure"] = self.on_failure
        if self.metadata is not None:
            out["metadata"] = _plain(self.metadata)
        out["tasks"] = [t.to_dict(resolve) for t in self.tasks]
        if self.attachments:
            out["attachments"] = _plain(self.attachments)
        return out

    def to_yaml(self) -> str:
        """The workflow as a YAML document (``gz validate`` accepts it)."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes ``to_yaml()`` to ``path``."""
        Path(path).write_text(self.to_yaml(), encoding="utf-8")

    # ------------------------------------------------------------------ input

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], base_dir: Optional[str] = None) -> "Workflow":
        """A workflow from a dict in the YAML format (``params`` for ``parameters``,
        ``retry: N``, dependencies by id or name, ids defaulting to ``task-<position>``)."""
        if not isinstance(doc, Mapping):
            raise _invalid("a workflow must be a mapping", code="GZ3007")
        unknown = [k for k in doc if k not in WORKFLOW_KEYS]
        if unknown:
            raise _invalid(
                "unknown workflow key %r" % unknown[0], "workflow keys: %s" % ", ".join(WORKFLOW_KEYS[:7])
            )
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid("the workflow has no `name`")
        wf = cls(
            name,
            description=doc.get("description"),
            timeout=doc.get("timeout"),
            on_failure=doc.get("on_failure"),
            metadata=doc.get("metadata"),
        )
        wf.base_dir = base_dir
        attachments = doc.get("attachments")
        if attachments is not None and not isinstance(attachments, Mapping):
            raise _invalid("`attachments` must be a mapping of digests to contents")
        wf.attachments = dict(attachments or {})
        tasks = doc.get("tasks")
        if tasks is None:
            tasks = []
        if not isinstance(tasks, list):
            raise _invalid("`tasks` must be a list")
        given = {t.get("id") for t in tasks if isinstance(t, Mapping) and t.get("id")}
        for position, item in enumerate(tasks):
            if not isinstance(item, Mapping):
                raise _invalid("task #%d must be a mapping" % (position + 1))
            item = _from_dialect(item, position)
            unknown = [k for k in item if k not in TASK_KEYS]
            if unknown:
                raise _invalid(
                    "unknown key %r in task #%d" % (unknown[0], position + 1),
                    "task keys: %s" % ", ".join(TASK_KEYS),
                )
            if "parameters" in item and "params" in item:
                raise _invalid("task #%d has both `parameters` and `params`" % (position + 1))
            task_id = item.get("id")
            if not task_id:
                task_id = "task-%d" % (position + 1)
                suffix = 1
                while task_id in given:
                    suffix += 1
                    task_id = "task-%d-%d" % (position + 1, suffix)
                given.add(task_id)
            task_id = str(task_id)
            method = item.get("method")
            if not method:
                raise _invalid("task #%d (%s) has no `method`" % (position + 1, task_id))
            params = item.get("parameters", item.get("params"))
            wf.add_task(
                name=str(item.get("name") or task_id),
                method=method,
                parameters=params or {},
                dependencies=[str(d) for d in _as_list(item.get("dependencies"))],
                priority=item.get("priority"),
                timeout=item.get("timeout"),
                retry=item.get("retry"),
                id=task_id,
                protocol=item.get("protocol"),
                tolerate_failures=bool(item.get("tolerate_failures", False)),
                batch=item.get("batch"),
            )
            files = item.get("files")
            if files is not None and not isinstance(files, Mapping):
                raise _invalid("the `files` of task #%d must be a mapping" % (position + 1))
            wf.tasks[-1].files = dict(files or {})
        return wf

    @classmethod
    def from_yaml(cls, text_or_path: Union[str, "os.PathLike[str]"]) -> "Workflow":
        """A workflow from a YAML file (its folder becomes ``base_dir``) or YAML text."""
        base_dir = None
        if isinstance(text_or_path, os.PathLike) or _looks_like_path(text_or_path):
            path = Path(text_or_path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise GleitzeitError("GZ9002", "cannot read %s: %s" % (path, exc.strerror or exc), hint="Check the path.") from None
            base_dir = str(path.resolve().parent)
        else:
            text = str(text_or_path)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GleitzeitError(
                "GZ7010", "YAML syntax error: %s" % exc, hint="Fix the YAML at the reported line and column."
            ) from None
        return cls.from_dict(doc, base_dir=base_dir)


def _from_dialect(item: Mapping[str, Any], position: int) -> Mapping[str, Any]:
    """A task of the original's dialect (``type: text`` and its fields at the top level) as
    a native one (``method:`` and ``parameters:``); other tasks as they are."""
    if "type" not in item:
        return item
    label = "task #%d" % (position + 1)
    kind_name = item.get("type")
    kind = DIALECT_ALIASES.get(kind_name, kind_name) if isinstance(kind_name, str) else None
    if kind not in DIALECT_TYPES:
        raise _invalid(
            "%s: unknown task type %r" % (label, kind_name),
            "types: %s (or give `method:` and `parameters:`)" % ", ".join(DIALECT_TYPES),
        )
    method, _ = DIALECT_TYPES[kind]
    fields: Dict[str, Any] = {}
    rest: Dict[str, Any] = {}
    for key, value in item.items():
        if key == "method" and isinstance(value, str) and "/" not in value:
            fields["http_method"] = value  # the HTTP verb of `type: http`
        elif key != "type" and key in DIALECT_FIELDS:
            fields[key] = value
        elif key != "type":
            rest[key] = value
    if "method" in rest:
        raise _invalid("%s has both `type` and `method`" % label, "`type: %s` means `method: %s`; keep one" % (kind_name, method))
    params: Dict[str, Any] = {}
    if kind == "text":
        messages = []
        if "system" in fields:
            messages.append({"role": "system", "content": fields.pop("system")})
        if "prompt" in fields:
            messages.append({"role": "user", "content": fields.pop("prompt")})
        if messages:
            params["messages"] = messages
        explicit_model = isinstance(rest.get("parameters", rest.get("params")), Mapping) and "model" in rest.get(
            "parameters", rest.get("params")
        )
        if "model" not in fields and not explicit_model:
            params["model"] = DEFAULT_TEXT_MODEL
    elif kind == "http" and "http_method" in fields:
        params["method"] = fields.pop("http_method")
    params.update(fields)
    explicit = rest.pop("parameters", None)
    if explicit is None:
        explicit = rest.pop("params", None)
    for key, value in (explicit or {}).items():
        if key in params:
            raise _invalid("%s gives `%s` both as a task field and in its parameters" % (label, key), "keep one")
        params[key] = value
    rest["method"] = method
    rest["parameters"] = params
    return rest


def _looks_like_path(value: str) -> bool:
    if "\n" in value:
        return False
    if value.endswith((".yaml", ".yml", ".json")):
        return True
    try:
        return os.path.isfile(value)
    except (OSError, ValueError):
        return False


class _Dumper(yaml.SafeDumper):
    """Safe YAML with block style for multi-line strings."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data and not any(line != line.rstrip() for line in data.split("\n")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)
