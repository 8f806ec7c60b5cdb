"""``@gleitzeit_task``: declare Python functions that a task service serves.

Usable bare (``@gleitzeit_task``), empty (``@gleitzeit_task()``) or with options
(``@gleitzeit_task(name=, category=, timeout=, description=, method=)``), on sync and async
functions. The function stays an ordinary callable; it is also recorded in a module-level
registry, which :class:`gleitzeit.TaskService` serves by default.

``method="ns/name"`` also declares an open method (``docs/protocol.md`` §5.7): a task of
that method calls the function with the task's parameters as keyword arguments.
"""

from __future__ import annotations

import inspect
import re
import threading
import typing
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, TypeVar, Union, overload

from .schema import function_schema, return_schema

__all__ = [
    "TaskFunction",
    "gleitzeit_task",
    "registered_functions",
    "get_function",
    "unregister",
    "clear_registry",
    "as_task_functions",
]

F = TypeVar("F", bound=Callable[..., Any])

_METHOD_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
#: What ``function_name`` may look like (``protocols/python.yaml``).
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_lock = threading.Lock()
_registry: Dict[str, "TaskFunction"] = {}


class TaskFunction:
    """A function a task service can run, with what is declared about it."""

    def __init__(
        self,
        func: Callable[..., Any],
        name: Optional[str] = None,
        category: Optional[str] = None,
        timeout: Optional[float] = None,
        description: Optional[str] = None,
        method: Optional[str] = None,
    ) -> None:
        if not callable(func):
            raise TypeError("a task function must be callable, not %r" % (func,))
        self.func = func
        self.name = name or getattr(func, "__name__", None) or "function"
        if not isinstance(self.name, str) or len(self.name) > 200 or not _FUNCTION_NAME.match(self.name):
            raise ValueError(
                "a task function name must match %s (at most 200 characters): %r" % (_FUNCTION_NAME.pattern, self.name)
            )
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError("timeout must be a positive number of seconds, not %r" % (timeout,))
        if method is not None and not _METHOD_NAME.match(method):
            raise ValueError("method must read `namespace/name`, not %r" % (method,))
        if method == "python/function":
            raise ValueError("python/function is the method of named functions; declare the function without `method`")
        self.category = category
        self.timeout = float(timeout) if timeout is not None else None
        self.description = description if description is not None else _first_paragraph(func)
        self.method = method
        self.is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None))
        self.parameters = function_schema(func)
        self.returns = return_schema(func)
        self.signature = _signature(self.name, func)

    def declaration(self, service_name: str) -> Dict[str, Any]:
        """The entry of registration ``metadata.functions``."""
        return {
            "name": self.name,
            "service_name": service_name,
            "description": self.description,
            "category": self.category,
            "signature": self.signature,
            "timeout": self.timeout,
            "is_async": self.is_async,
            "parameters": self.parameters,
            "returns": self.returns,
        }

    def method_declaration(self) -> Optional[Dict[str, Any]]:
        """The entry of registration ``metadata.methods`` (None without ``method``)."""
        if self.method is None:
            return None
        return {"name": self.method, "description": self.description, "params_schema": self.parameters}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return "TaskFunction(%r%s)" % (self.name, ", method=%r" % self.method if self.method else "")


def _hint_text(hint: Any) -> str:
    if isinstance(hint, str):
        return hint
    if hint is type(None):
        return "None"
    if inspect.isclass(hint) and not getattr(hint, "__args__", None):
        return hint.__qualname__ if hint.__module__ == "builtins" else "%s.%s" % (hint.__module__, hint.__qualname__)
    return repr(hint).replace("typing.", "")


def _signature(name: str, func: Callable[..., Any]) -> str:
    """``name(a: int, b: str = 'x') -> dict``, with string annotations resolved."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return name
    try:
        hints = typing.get_type_hints(func)
    except Exception:
        hints = {}
    params = []
    for p in sig.parameters.values():
        hint = hints.get(p.name, p.annotation)
        params.append(p.replace(annotation=_HintText(_hint_text(hint)) if hint is not inspect.Parameter.empty else hint))
    ret = hints.get("return", sig.return_annotation)
    ret = _HintText(_hint_text(ret)) if ret is not inspect.Signature.empty else ret
    return "%s%s" % (name, sig.replace(parameters=params, return_annotation=ret))


class _HintText:
    """An annotation that prints as the given text (for signatures)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _first_paragraph(func: Callable[..., Any]) -> str:
    doc = inspect.getdoc(func) or ""
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ").strip()


def _register(info: TaskFunction) -> None:
    with _lock:
        if info.method is not None:
            for other in _registry.values():
                if other.method == info.method and other.name != info.name:
                    raise ValueError("method %r is declared by %r already" % (info.method, other.name))
        _registry[info.name] = info


@overload
def gleitzeit_task(func: F) -> F: ...


@overload
def gleitzeit_task(
    func: None = None,
    *,
    name: Optional[str] = None,
    category: Optional[str] = None,
    timeout: Optional[float] = None,
    description: Optional[str] = None,
    method: Optional[str] = None,
) -> Callable[[F], F]: ...


def gleitzeit_task(
    func: Optional[Callable[..., Any]] = None,
    *,
    name: Optional[str] = None,
    category: Optional[str] = None,
    timeout: Optional[float] = None,
    description: Optional[str] = None,
    method: Optional[str] = None,
) -> Any:
    """Declares a function as a task; returns the function unchanged (it gets a
    ``__gleitzeit_task__`` attribute holding its :class:`TaskFunction`)."""

    def decorate(f: F) -> F:
        info = TaskFunction(f, name=name, category=category, timeout=timeout, description=description, method=method)
        _register(info)
        try:
            setattr(f, "__gleitzeit_task__", info)
        except (AttributeError, TypeError):
            pass
        return f

    if func is not None:
        return decorate(func)  # type: ignore[arg-type]
    return decorate


def registered_functions() -> List[TaskFunction]:
    """Every function declared with ``@gleitzeit_task``, in declaration order."""
    with _lock:
        return list(_registry.values())


def get_function(name: str) -> Optional[TaskFunction]:
    with _lock:
        return _registry.get(name)


def unregister(name: str) -> None:
    with _lock:
        _registry.pop(name, None)


def clear_registry() -> None:
    """Forgets every declared function (for tests)."""
    with _lock:
        _registry.clear()


def as_task_functions(
    functions: Union[None, Iterable[Any], Mapping[str, Callable[..., Any]]],
) -> List[TaskFunction]:
    """What a service serves: the registry (None), or decorated or plain functions (a list,
    or a dict of name → function)."""
    if functions is None:
        return registered_functions()
    out: List[TaskFunction] = []
    if isinstance(functions, Mapping):
        items: List[Any] = []
        for n, f in functions.items():
            info = f if isinstance(f, TaskFunction) else getattr(f, "__gleitzeit_task__", None)
            if isinstance(info, TaskFunction):
                items.append(info if info.name == n else TaskFunction(
                    info.func, name=n, category=info.category, timeout=info.timeout,
                    description=info.description, method=info.method))
            else:
                items.append(TaskFunction(f, name=n))
    else:
        items = list(functions)
    for f in items:
        if isinstance(f, TaskFunction):
            out.append(f)
        elif isinstance(getattr(f, "__gleitzeit_task__", None), TaskFunction):
            out.append(getattr(f, "__gleitzeit_task__"))
        else:
            out.append(TaskFunction(f))
    names = [f.name for f in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError("functions declared twice: %s" % ", ".join(sorted(dupes)))
    return out
