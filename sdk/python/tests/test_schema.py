"""JSON Schema from type hints, and the validator's paths."""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import pytest

from gleitzeit.schema import function_schema, return_schema, schema_of_hint, validate, validate_call


@pytest.mark.parametrize(
    "hint, schema",
    [
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (str, {"type": "string"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (type(None), {"type": "null"}),
        (list, {"type": "array"}),
        (List[int], {"type": "array", "items": {"type": "integer"}}),
        (dict, {"type": "object"}),
        (Dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (Dict[str, Any], {"type": "object"}),
        (tuple, {"type": "array"}),
        (Tuple[int, str], {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2}),
        (Tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (Optional[int], {"type": ["integer", "null"]}),
        (Union[int, str], {"type": ["integer", "string"]}),
        (Optional[List[str]], {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}),
        (Literal["a", "b", 3], {"enum": ["a", "b", 3]}),
        (Any, {}),
        (Union[int, Any], {}),
    ],
)
def test_hints_become_schemas(hint, schema):
    assert schema_of_hint(hint) == schema


@pytest.mark.skipif(sys.version_info < (3, 10), reason="X | None needs Python 3.10")
def test_pipe_unions():
    assert schema_of_hint(eval("int | None")) == {"type": ["integer", "null"]}
    assert schema_of_hint(eval("list[int] | dict[str, int]")) == {
        "anyOf": [
            {"type": "array", "items": {"type": "integer"}},
            {"type": "object", "additionalProperties": {"type": "integer"}},
        ]
    }


def f(n: int, words: List[str], scale: float = 1.0, mode: Literal["a", "b"] = "a", extra=None) -> Dict[str, int]:
    return {}


def g(*args: int, **kwargs: str) -> None:
    pass


def test_function_schemas():
    assert function_schema(f) == {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "words": {"type": "array", "items": {"type": "string"}},
            "scale": {"type": "number", "default": 1.0},
            "mode": {"enum": ["a", "b"], "default": "a"},
            "extra": {"default": None},
        },
        "required": ["n", "words"],
        "additionalProperties": False,
    }
    assert return_schema(f) == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert function_schema(g) == {"type": "object", "properties": {}, "additionalProperties": True}
    assert return_schema(g) == {"type": "null"}
    assert return_schema(lambda: 1) == {}


def test_validator_paths_and_messages():
    schema = function_schema(f)
    assert validate({"n": 1, "words": []}, schema) is None
    assert validate({"n": "x", "words": []}, schema, "kwargs") == 'kwargs.n: "x" is not of type "integer"'
    assert validate({"n": 1, "words": ["a", 2]}, schema, "kwargs") == 'kwargs.words[1]: 2 is not of type "string"'
    assert validate({"n": 1}, schema, "kwargs") == 'kwargs: "words" is a required property'
    assert validate({"n": 1, "words": [], "zz": 0}, schema, "kwargs") == 'kwargs: additional property "zz" is not allowed'
    assert validate({"n": 1, "words": [], "mode": "c"}, schema, "kwargs") == 'kwargs.mode: "c" is not one of ["a", "b"]'
    assert validate({"n": True, "words": []}, schema, "kwargs") == 'kwargs.n: true is not of type "integer"'
    assert validate({"n": 2.0, "words": []}, schema) is None  # 2.0 is an integer in JSON Schema
    assert validate(None, {"type": ["integer", "null"]}) is None
    assert validate("x", {"type": ["integer", "null"]}, "a") == 'a: "x" is not of type "integer" or "null"'
    nested = {"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object", "properties": {"v": {"type": "number"}}}}}}
    assert validate({"rows": [{"v": 1}, {"v": "no"}]}, nested, "kwargs") == 'kwargs.rows[1].v: "no" is not of type "number"'
    assert validate(5, {"type": "integer", "minimum": 0, "maximum": 3}, "n") == "n: 5 is more than the maximum of 3"
    assert validate("ab", {"type": "string", "pattern": "^[0-9]+$"}, "s") == 's: "ab" does not match "^[0-9]+$"'
    assert validate([1, 2, 3], schema_of_hint(Tuple[int, str]), "t") == "t: expected at most 2 items, got 3"
    assert validate([1, 1], {"type": "array", "uniqueItems": True}, "u") == "u: [1, 1] has non-unique items"


def test_positional_args_are_matched_to_parameters_in_order():
    schema = function_schema(f)
    assert validate_call(f, schema, [1, ["a"]], {}) is None
    assert validate_call(f, schema, [1], {"words": ["w"], "scale": 2}) is None
    assert validate_call(f, schema, ["x"], {"words": []}) == 'args[0]: "x" is not of type "integer"'
    assert validate_call(f, schema, [1, ["a"], "big"], {}) == 'args[2]: "big" is not of type "number"'
    assert validate_call(f, schema, [1, [], 1.0, "a", None, 6], {}).startswith("args: 6 positional arguments given, f takes at most 5")
    assert validate_call(f, schema, [1], {"n": 2, "words": []}) == 'kwargs.n: "n" is given both positionally and by name'
    assert validate_call(f, schema, [], {"words": []}) == 'kwargs: "n" is a required property'
    assert validate_call(g, function_schema(g), [1, 2, 3], {"anything": "x"}) is None
    assert validate_call(f, schema, "notalist", {}) == 'args: "notalist" is not of type "array"'
