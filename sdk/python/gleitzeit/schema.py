"""JSON Schema (draft 2020-12) from Python type hints, and a small validator for it.

:func:`schema_of_hint` maps ``int``, ``float``, ``str``, ``bool``, ``None``, ``list``/``List[T]``,
``dict``/``Dict[str, T]``, ``tuple``/``Tuple[...]``, ``Optional``/``Union`` (and ``X | None``),
``Literal`` and ``Any`` (or no hint: ``{}``). :func:`function_schema` describes a function's
keyword arguments (parameters with defaults are not required, ``additionalProperties`` is
false unless the function takes ``**kwargs``).

:func:`validate` returns the first violation as ``path: message``, e.g.
``kwargs.n: "x" is not of type "integer"``; :func:`validate_call` matches positional
``args`` to the parameters in order first (``args[0]: ...``). It knows the keywords the
generated schemas use (``type``, ``enum``, ``const``, ``anyOf``, ``oneOf``, ``allOf``,
``items``, ``prefixItems``, ``minItems``, ``maxItems``, ``uniqueItems``, ``properties``,
``required``, ``additionalProperties``, ``minimum``, ``maximum``, ``exclusiveMinimum``,
``exclusiveMaximum``, ``minLength``, ``maxLength``, ``pattern``) and ignores the others.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import re
import sys
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "schema_of_hint",
    "function_schema",
    "return_schema",
    "validate",
    "validate_call",
    "bind_arguments",
]

_NoneType = type(None)
_SIMPLE = {int: "integer", float: "number", str: "string", bool: "boolean", _NoneType: "null"}

try:  # Python 3.10+: X | Y
    from types import UnionType as _UnionType  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python 3.9
    _UnionType = None  # type: ignore[assignment,misc]


def schema_of_hint(hint: Any) -> Dict[str, Any]:
    """The JSON Schema of values of the type ``hint``."""
    if hint is inspect.Parameter.empty or hint is Any or hint is object:
        return {}
    if hint is None or hint is _NoneType:
        return {"type": "null"}
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (_UnionType is not None and origin is _UnionType):
        return _union([schema_of_hint(a) for a in args])
    if origin is typing.Literal:
        return {"enum": list(args)}
    if _is_annotated(hint):
        return schema_of_hint(args[0]) if args else {}
    if hint in (list, List, set, frozenset, collections.abc.Sequence) or origin in (
        list,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.Set,
        collections.abc.MutableSequence,
    ):
        out: Dict[str, Any] = {"type": "array"}
        if args:
            out["items"] = schema_of_hint(args[0])
        if hint in (set, frozenset) or origin in (set, frozenset, collections.abc.Set):
            out["uniqueItems"] = True
        return out
    if hint in (tuple, Tuple) or origin is tuple:
        if not args:
            return {"type": "array"}
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of_hint(args[0])}
        if args == ((),):  # Tuple[()]
            return {"type": "array", "maxItems": 0}
        return {
            "type": "array",
            "prefixItems": [schema_of_hint(a) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if hint in (dict, Dict, collections.abc.Mapping) or origin in (
        dict,
        collections.abc.Mapping,
        collections.abc.MutableMapping,
    ):
        out = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            out["additionalProperties"] = schema_of_hint(args[1])
        return out
    if inspect.isclass(hint):
        for base, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
            if issubclass(hint, base):
                return {"type": name}
    return {}


def _is_annotated(hint: Any) -> bool:
    annotated = getattr(typing, "Annotated", None)
    return annotated is not None and typing.get_origin(hint) is annotated


def _union(members: List[Dict[str, Any]]) -> Dict[str, Any]:
    if any(m == {} for m in members):
        return {}
    if all(set(m) == {"type"} for m in members):
        types: List[str] = []
        for m in members:
            for t in m["type"] if isinstance(m["type"], list) else [m["type"]]:
                if t not in types:
                    types.append(t)
        return {"type": types[0] if len(types) == 1 else types}
    return {"anyOf": members}


def _hints(func: Callable[..., Any]) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:
        # e.g. `X | None` written as a string on Python 3.9: per-parameter fallback below
        hints: Dict[str, Any] = {}
        raw = getattr(func, "__annotations__", {}) or {}
        module = sys.modules.get(getattr(func, "__module__", ""), None)
        namespace = dict(vars(module)) if module is not None else {}
        for name, value in raw.items():
            if isinstance(value, str):
                try:
                    value = eval(value, namespace)  # noqa: S307 - annotations of the user's own code
                except Exception:
                    value = inspect.Parameter.empty
            hints[name] = value
        return hints


def function_schema(func: Callable[..., Any]) -> Dict[str, Any]:
    """The JSON Schema of ``func``'s keyword arguments."""
    sig = inspect.signature(func)
    hints = _hints(func)
    properties: Dict[str, Any] = {}
    required: List[str] = []
    extra = False
    for name, param in sig.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        prop = dict(schema_of_hint(hints.get(name, param.annotation)))
        if param.default is inspect.Parameter.empty:
            required.append(name)
        else:
            try:
                json.dumps(param.default)
                prop["default"] = param.default
            except (TypeError, ValueError):
                pass
        properties[name] = prop
    schema: Dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = True if extra else False
    return schema


def return_schema(func: Callable[..., Any]) -> Dict[str, Any]:
    """The JSON Schema of ``func``'s return value (``{}`` when not annotated)."""
    hints = _hints(func)
    if "return" not in hints:
        return {}
    return schema_of_hint(hints["return"])


# ---------------------------------------------------------------------- validation


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_ok(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, (list, tuple))
    if name == "object":
        return isinstance(value, Mapping)
    return True


def _join(path: str, key: str) -> str:
    return "%s.%s" % (path, key) if path else key


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def validate(value: Any, schema: Mapping[str, Any], path: str = "") -> Optional[str]:
    """The first violation of ``schema`` by ``value`` as ``path: message``, or None."""
    where = path or "value"
    if schema is True or not schema:
        return None
    if schema is False:
        return "%s: no value is allowed here" % where
    t = schema.get("type")
    if t is not None:
        names = t if isinstance(t, list) else [t]
        if not any(_type_ok(value, n) for n in names):
            return "%s: %s is not of type %s" % (where, _show(value), " or ".join('"%s"' % n for n in names))
    if "const" in schema and not _equal(value, schema["const"]):
        return "%s: %s is not %s" % (where, _show(value), _show(schema["const"]))
    if "enum" in schema and not any(_equal(value, e) for e in schema["enum"]):
        return "%s: %s is not one of %s" % (where, _show(value), _show(schema["enum"]))
    if "anyOf" in schema:
        errors = [validate(value, s, path) for s in schema["anyOf"]]
        if all(e is not None for e in errors):
            if len(errors) == 1:
                return errors[0]
            return "%s: %s is not valid under any of the given schemas" % (where, _show(value))
    if "oneOf" in schema:
        passing = sum(1 for s in schema["oneOf"] if validate(value, s, path) is None)
        if passing != 1:
            return "%s: %s must match exactly one schema of oneOf (matches %d)" % (where, _show(value), passing)
    for sub in schema.get("allOf", []):
        err = validate(value, sub, path)
        if err:
            return err
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok, word in (
            ("minimum", lambda v, b: v >= b, "less than the minimum of"),
            ("maximum", lambda v, b: v <= b, "more than the maximum of"),
            ("exclusiveMinimum", lambda v, b: v > b, "less than or equal to the exclusive minimum of"),
            ("exclusiveMaximum", lambda v, b: v < b, "more than or equal to the exclusive maximum of"),
        ):
            if key in schema and not ok(value, schema[key]):
                return "%s: %s is %s %s" % (where, _show(value), word, _show(schema[key]))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return "%s: %s is shorter than %d characters" % (where, _show(value), schema["minLength"])
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return "%s: %s is longer than %d characters" % (where, _show(value), schema["maxLength"])
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            try:
                matched = re.search(pattern, value) is not None
            except re.error:
                matched = True
            if not matched:
                return "%s: %s does not match %s" % (where, _show(value), _show(pattern))
    if isinstance(value, (list, tuple)):
        err = _validate_array(value, schema, path, where)
        if err:
            return err
    if isinstance(value, Mapping):
        err = _validate_object(value, schema, path, where)
        if err:
            return err
    return None


def _validate_array(value: Sequence[Any], schema: Mapping[str, Any], path: str, where: str) -> Optional[str]:
    if "minItems" in schema and len(value) < schema["minItems"]:
        return "%s: expected at least %d items, got %d" % (where, schema["minItems"], len(value))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return "%s: expected at most %d items, got %d" % (where, schema["maxItems"], len(value))
    prefix = schema.get("prefixItems") or []
    for i, sub in enumerate(prefix[: len(value)]):
        err = validate(value[i], sub, "%s[%d]" % (path, i))
        if err:
            return err
    items = schema.get("items")
    if items is not None:
        for i in range(len(prefix), len(value)):
            err = validate(value[i], items, "%s[%d]" % (path, i))
            if err:
                return err
    if schema.get("uniqueItems"):
        seen: List[str] = []
        for item in value:
            key = json.dumps(item, sort_keys=True, default=repr)
            if key in seen:
                return "%s: %s has non-unique items" % (where, _show(list(value)))
            seen.append(key)
    return None


def _validate_object(value: Mapping[str, Any], schema: Mapping[str, Any], path: str, where: str) -> Optional[str]:
    for name in schema.get("required", []):
        if name not in value:
            return '%s: "%s" is a required property' % (where, name)
    properties = schema.get("properties", {})
    for name, sub in properties.items():
        if name in value:
            err = validate(value[name], sub, _join(path, name))
            if err:
                return err
    additional = schema.get("additionalProperties", True)
    for name in value:
        if name in properties:
            continue
        if additional is False:
            return '%s: additional property "%s" is not allowed' % (where, name)
        if isinstance(additional, Mapping):
            err = validate(value[name], additional, _join(path, str(name)))
            if err:
                return err
    return None


def bind_arguments(
    func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Tuple[Dict[str, Any], List[str], Optional[str]]:
    """Matches positional ``args`` to ``func``'s parameters in order.

    Returns (every argument by name, for each name where it came from as a path, the first
    mistake or None): too many positional arguments, or one given both ways.
    """
    sig = inspect.signature(func)
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    takes_varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values())
    bound: Dict[str, Any] = {}
    paths: List[str] = []
    for i, value in enumerate(args):
        if i >= len(positional):
            if takes_varargs:
                break
            return bound, paths, "args: %d positional arguments given, %s takes at most %d" % (
                len(args),
                getattr(func, "__name__", "the function"),
                len(positional),
            )
        bound[positional[i].name] = value
        paths.append("args[%d]" % i)
    for name, value in kwargs.items():
        if name in bound:
            return bound, paths, 'kwargs.%s: "%s" is given both positionally and by name' % (name, name)
        bound[name] = value
        paths.append("kwargs.%s" % name)
    return bound, paths, None


def validate_call(
    func: Callable[..., Any],
    schema: Mapping[str, Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> Optional[str]:
    """The first violation of a call ``func(*args, **kwargs)`` against ``schema`` (the
    function's :func:`function_schema`), with paths ``args[i]`` / ``kwargs.name``."""
    if not isinstance(args, (list, tuple)):
        return "args: %s is not of type \"array\"" % _show(args)
    if not isinstance(kwargs, Mapping):
        return "kwargs: %s is not of type \"object\"" % _show(kwargs)
    bound, paths, mistake = bind_arguments(func, args, kwargs)
    if mistake:
        return mistake
    where = dict(zip(bound.keys(), paths))
    for name in schema.get("required", []):
        if name not in bound:
            return 'kwargs: "%s" is a required property' % name
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties", True)
    for name, value in bound.items():
        if name in properties:
            err = validate(value, properties[name], where[name])
        elif additional is False:
            return 'kwargs: additional property "%s" is not allowed' % name
        elif isinstance(additional, Mapping):
            err = validate(value, additional, where[name])
        else:
            err = None
        if err:
            return err
    return None
