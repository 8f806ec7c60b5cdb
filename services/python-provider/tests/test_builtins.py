"""Tests of the python-provider's built-in functions (src/builtins.py) and their catalogue
(protocols/functions.yaml): the two describe the same functions with the same parameters,
every schema is a sound JSON Schema, and every function does what its entry says.

Run from the repository root: python3 -m pytest services/python-provider/tests/test_builtins.py -q
Needs only the standard library, pytest and PyYAML. (When the `jsonschema` package happens to
be installed, the schemas are also checked against the draft 2020-12 meta-schema.)

builtins.py is loaded the way the worker runs it: its source exec()'d in a fresh namespace.
`call()` checks each call's arguments against the catalogue's schema first (positional args
bound to the properties in order, as the provider does) and the result against `returns`,
so every behaviour test is also a test of the catalogue.
"""

import ast
import inspect
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import time

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve()
PROVIDER = HERE.parents[1]
REPO = HERE.parents[3]
BUILTINS_PY = PROVIDER / "src" / "builtins.py"
WORKER_PY = PROVIDER / "src" / "worker.py"
CATALOGUE_YAML = REPO / "protocols" / "functions.yaml"

SOURCE = BUILTINS_PY.read_text(encoding="utf-8")
CATALOGUE = yaml.safe_load(CATALOGUE_YAML.read_text(encoding="utf-8"))
FUNCTIONS = CATALOGUE["functions"]
SAFE_INTEGER = 2**53 - 1
CATEGORIES = {"math", "text", "data", "time"}


def load_builtins():
    """A fresh namespace holding builtins.py, as the worker's exec() leaves it."""
    namespace = {"__name__": "__main__", "context": {}}
    exec(compile(SOURCE, "<builtins>", "exec", dont_inherit=True), namespace)
    return namespace


NS = load_builtins()


# --------------------------------------------------------------------------------------
# A small JSON Schema validator for the keywords the catalogue uses (draft 2020-12 meaning).
# --------------------------------------------------------------------------------------

ANNOTATIONS = {"description", "default", "title", "examples"}
ASSERTIONS = {
    "type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems",
    "maxItems", "items", "properties", "required", "additionalProperties", "anyOf",
}
TYPE_NAMES = {"null", "boolean", "integer", "number", "string", "array", "object"}


def is_type(value, name):
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
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise AssertionError("unknown type name %r" % name)


def json_equal(a, b):
    """Equality as JSON means it: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def schema_errors(schema, value, where="$"):
    """Every way `value` violates `schema`, as readable strings."""
    import re

    errors = []
    kind = schema.get("type")
    if kind is not None:
        names = [kind] if isinstance(kind, str) else kind
        if not any(is_type(value, name) for name in names):
            return ["%s: %r is not of type %s" % (where, value, kind)]
    if "enum" in schema and not any(json_equal(value, option) for option in schema["enum"]):
        errors.append("%s: %r is not one of %s" % (where, value, schema["enum"]))
    if is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append("%s: %r < minimum %r" % (where, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errors.append("%s: %r > maximum %r" % (where, value, schema["maximum"]))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append("%s: shorter than %d" % (where, schema["minLength"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append("%s: longer than %d" % (where, schema["maxLength"]))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append("%s: %r does not match %r" % (where, value, schema["pattern"]))
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append("%s: fewer than %d items" % (where, schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append("%s: more than %d items" % (where, schema["maxItems"]))
        if "items" in schema:
            for index, item in enumerate(value):
                errors += schema_errors(schema["items"], item, "%s[%d]" % (where, index))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append("%s: missing required %r" % (where, name))
        for name, item in value.items():
            if name in properties:
                errors += schema_errors(properties[name], item, "%s.%s" % (where, name))
            elif schema.get("additionalProperties") is False:
                errors.append("%s: unexpected property %r" % (where, name))
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(schema["additionalProperties"], item, "%s.%s" % (where, name))
    if "anyOf" in schema and not any(not schema_errors(s, value, where) for s in schema["anyOf"]):
        errors.append("%s: %r matches none of anyOf" % (where, value))
    return errors


def schema_problems(schema, where):
    """Why `schema` is not a sound schema in the subset above (empty when it is)."""
    if not isinstance(schema, dict):
        return ["%s: a schema must be an object, not %r" % (where, schema)]
    problems = []
    unknown = set(schema) - ANNOTATIONS - ASSERTIONS
    if unknown:
        problems.append("%s: keywords the catalogue does not use: %s" % (where, sorted(unknown)))
    kind = schema.get("type")
    if kind is not None:
        names = [kind] if isinstance(kind, str) else kind
        if not isinstance(names, list) or not names or not set(names) <= TYPE_NAMES:
            problems.append("%s: bad type %r" % (where, kind))
        elif len(set(names)) != len(names):
            problems.append("%s: repeated type in %r" % (where, kind))
    for keyword in ("minimum", "maximum"):
        if keyword in schema and not is_type(schema[keyword], "number"):
            problems.append("%s: %s must be a number" % (where, keyword))
    for keyword in ("minLength", "maxLength", "minItems", "maxItems"):
        if keyword in schema and not (is_type(schema[keyword], "integer") and schema[keyword] >= 0):
            problems.append("%s: %s must be a non-negative integer" % (where, keyword))
    if "pattern" in schema:
        import re

        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as error:
            problems.append("%s: bad pattern: %s" % (where, error))
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        problems.append("%s: enum must be a non-empty array" % where)
    if "description" in schema and not isinstance(schema["description"], str):
        problems.append("%s: description must be a string" % where)
    if "items" in schema:
        problems += schema_problems(schema["items"], where + ".items")
    if "anyOf" in schema:
        if not isinstance(schema["anyOf"], list) or not schema["anyOf"]:
            problems.append("%s: anyOf must be a non-empty array" % where)
        else:
            for index, option in enumerate(schema["anyOf"]):
                problems += schema_problems(option, "%s.anyOf[%d]" % (where, index))
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        problems.append("%s: properties must be an object" % where)
        properties = {}
    for name, child in properties.items():
        problems += schema_problems(child, "%s.properties.%s" % (where, name))
    required = schema.get("required", [])
    if not isinstance(required, list) or len(set(required)) != len(required):
        problems.append("%s: required must be an array of distinct names" % where)
    elif not set(required) <= set(properties):
        problems.append("%s: required names no property: %s" % (where, set(required) - set(properties)))
    extra = schema.get("additionalProperties", True)
    if isinstance(extra, dict):
        problems += schema_problems(extra, where + ".additionalProperties")
    elif not isinstance(extra, bool):
        problems.append("%s: additionalProperties must be a boolean or a schema" % where)
    if "default" in schema and not problems:
        problems += ["%s: its default: %s" % (where, e) for e in schema_errors(schema, schema["default"])]
    return problems


# --------------------------------------------------------------------------------------
# Calling the built-ins
# --------------------------------------------------------------------------------------


def bind(name, args, kwargs):
    """Positional args bound to the catalogue's properties in order, as the provider does."""
    names = list(FUNCTIONS[name]["parameters"]["properties"])
    assert len(args) <= len(names), "%s takes at most %d positional arguments" % (name, len(names))
    bound = dict(zip(names, args))
    for key, value in kwargs.items():
        assert key not in bound, "%s given both ways" % key
        bound[key] = value
    return bound


def big_integers(value):
    """Integers in a result that not every JSON reader keeps exact."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value] if abs(value) > SAFE_INTEGER else []
    if isinstance(value, list):
        return [big for item in value for big in big_integers(item)]
    if isinstance(value, dict):
        return [big for item in value.values() for big in big_integers(item)]
    return []


def call(name, *args, **kwargs):
    """Calls a built-in through _gz_call after its schema accepted the arguments; checks that
    the result is plain JSON matching `returns`, and returns it."""
    errors = schema_errors(FUNCTIONS[name]["parameters"], bind(name, args, kwargs))
    assert not errors, "the catalogue refuses a call the test thinks valid: %s" % errors
    result = NS["_gz_call"]({"function_name": name, "args": list(args), "kwargs": kwargs})
    assert json_equal(json.loads(json.dumps(result, allow_nan=False)), result), "not plain JSON"
    assert not big_integers(result), "integers beyond 2**53 - 1 in the result"
    errors = schema_errors(FUNCTIONS[name].get("returns", {}), result)
    assert not errors, "the result does not match `returns`: %s" % errors
    return result


def refused(name, *args, **kwargs):
    """Whether the catalogue's schema refuses these arguments (the provider would not run it)."""
    return bool(schema_errors(FUNCTIONS[name]["parameters"], bind(name, args, kwargs)))


def run(name, *args, **kwargs):
    """Calls a built-in directly, without the schema (for defence-in-depth checks)."""
    return NS["_gz_call"]({"function_name": name, "args": list(args), "kwargs": kwargs})


def digits_to_int(text):
    """int(text) for any length (str/int conversion refuses more than 4300 digits)."""
    number = 0
    for start in range(0, len(text), 1000):
        chunk = text[start : start + 1000]
        number = number * 10 ** len(chunk) + int(chunk)
    return number


# --------------------------------------------------------------------------------------
# The catalogue and the implementations agree
# --------------------------------------------------------------------------------------


def public_functions_defined():
    """Names of the public functions builtins.py defines at top level."""
    tree = ast.parse(SOURCE)
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    }


def test_catalogue_and_implementation_list_the_same_functions():
    defined = public_functions_defined()
    assert set(FUNCTIONS) == defined
    assert set(NS["_BUILTINS"]) == defined
    for name, function in NS["_BUILTINS"].items():
        assert NS[name] is function
    assert 25 <= len(FUNCTIONS) <= 35


def test_catalogue_file_has_only_known_keys():
    assert set(CATALOGUE) == {"functions"}
    for name, entry in FUNCTIONS.items():
        assert set(entry) <= {"category", "description", "parameters", "returns"}, name
        assert {"category", "description", "parameters", "returns"} <= set(entry), name
        assert entry["category"] in CATEGORIES, name
        assert isinstance(entry["description"], str) and "\n" not in entry["description"], name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_parameters_match_the_schema_in_order_with_defaults(name):
    schema = FUNCTIONS[name]["parameters"]
    signature = inspect.signature(NS[name])
    parameters = list(signature.parameters.values())
    assert all(p.kind == p.POSITIONAL_OR_KEYWORD for p in parameters), "plain parameters only"
    assert [p.name for p in parameters] == list(schema["properties"]), "same names, same order"
    without_default = [p.name for p in parameters if p.default is p.empty]
    assert schema.get("required", []) == without_default
    for parameter in parameters:
        declared = schema["properties"][parameter.name]
        if parameter.default is parameter.empty:
            assert "default" not in declared, parameter.name
        elif parameter.default is NS["_NO_DEFAULT"]:
            assert "default" not in declared, "%s: omitted means absent, not a value" % parameter.name
        else:
            assert "default" in declared, "%s: the schema should state the default" % parameter.name
            assert json_equal(declared["default"], parameter.default), parameter.name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_docstring_first_line_is_the_description(name):
    doc = inspect.getdoc(NS[name])
    assert doc, "%s has no docstring" % name
    assert doc.splitlines()[0] == FUNCTIONS[name]["description"]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_schemas_are_sound_closed_object_schemas(name):
    parameters = FUNCTIONS[name]["parameters"]
    assert parameters["type"] == "object"
    assert parameters["additionalProperties"] is False
    assert isinstance(parameters["properties"], dict)
    assert schema_problems(parameters, name + ".parameters") == []
    assert schema_problems(FUNCTIONS[name]["returns"], name + ".returns") == []


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_string_and_list_parameter_is_bounded(name):
    """No call may hand a function unbounded input."""
    for parameter, schema in FUNCTIONS[name]["parameters"]["properties"].items():
        kinds = schema.get("type", [])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if "string" in kinds:
            assert "maxLength" in schema, "%s.%s" % (name, parameter)
        if "array" in kinds:
            assert "maxItems" in schema, "%s.%s" % (name, parameter)
        if "integer" in kinds:
            assert "maximum" in schema, "%s.%s" % (name, parameter)


def test_schemas_are_valid_draft_2020_12_when_jsonschema_is_installed():
    jsonschema = pytest.importorskip("jsonschema")
    for name, entry in FUNCTIONS.items():
        jsonschema.Draft202012Validator.check_schema(entry["parameters"])
        jsonschema.Draft202012Validator.check_schema(entry["returns"])


def test_builtins_py_imports_only_small_stdlib_modules_and_only_defines_at_import():
    allowed_imports = {"csv", "io", "json", "math", "re", "unicodedata", "collections", "datetime", "typing"}
    tree = ast.parse(SOURCE)
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert {alias.name for alias in node.names} <= allowed_imports
        elif isinstance(node, ast.ImportFrom):
            assert node.module in allowed_imports
        elif isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        else:
            assert isinstance(node, (ast.FunctionDef, ast.Assign, ast.AnnAssign)), ast.dump(node)[:80]
    assert "if __name__" not in SOURCE


def test_exec_of_builtins_is_quick():
    code = compile(SOURCE, "<builtins>", "exec", dont_inherit=True)
    exec(code, {"context": {}})  # first run may import modules
    started = time.perf_counter()
    for _ in range(20):
        exec(code, {"context": {}})
    assert (time.perf_counter() - started) / 20 < 0.05


# --------------------------------------------------------------------------------------
# The dispatcher
# --------------------------------------------------------------------------------------


def test_worker_style_run_sets_result():
    namespace = {"context": {"function_name": "fibonacci", "kwargs": {"n": 5}}}
    exec(compile(SOURCE + "\nresult = _gz_call(context)\n", "<job>", "exec", dont_inherit=True), namespace)
    assert namespace["result"] == [0, 1, 1, 2, 3]


def test_args_and_kwargs_may_be_missing_or_null():
    assert NS["_gz_call"]({"function_name": "count_words", "args": ["a b"]}) == 2
    assert NS["_gz_call"]({"function_name": "count_words", "args": None, "kwargs": {"text": "a"}}) == 1
    assert NS["_gz_call"]({"function_name": "primes_up_to", "args": [10], "kwargs": None}) == [2, 3, 5, 7]


def test_unknown_function_raises_lookup_error():
    with pytest.raises(LookupError, match="^unknown built-in function: no_such_function$"):
        NS["_gz_call"]({"function_name": "no_such_function"})


@pytest.mark.parametrize(
    "name", ["_gz_call", "_exact", "_BUILTINS", "__import__", "__builtins__", "_integer", "json", "re", "math", "context", "exec", "print"]
)
def test_dispatcher_refuses_private_names_modules_and_python_builtins(name):
    with pytest.raises(LookupError, match="unknown built-in function"):
        NS["_gz_call"]({"function_name": name, "args": [], "kwargs": {}})


@pytest.mark.parametrize("name", [None, 3, ["fibonacci"], ""])
def test_dispatcher_refuses_names_that_are_not_strings(name):
    with pytest.raises(LookupError):
        NS["_gz_call"]({"function_name": name})


def test_dispatcher_refuses_malformed_contexts():
    with pytest.raises(TypeError):
        NS["_gz_call"](None)
    with pytest.raises(TypeError):
        NS["_gz_call"]({"function_name": "fibonacci", "args": {"n": 3}})
    with pytest.raises(TypeError):
        NS["_gz_call"]({"function_name": "fibonacci", "kwargs": [3]})
    with pytest.raises(TypeError):
        NS["_gz_call"]({"function_name": "fibonacci", "kwargs": {"count": 3}})


# --------------------------------------------------------------------------------------
# math
# --------------------------------------------------------------------------------------


def test_fibonacci_small_cases():
    assert call("fibonacci", n=0) == []
    assert call("fibonacci", n=1) == [0]
    assert call("fibonacci", n=10) == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    assert call("fibonacci", 7) == [0, 1, 1, 2, 3, 5, 8]


def test_fibonacci_gives_big_numbers_as_decimal_strings():
    numbers = call("fibonacci", n=81)
    assert numbers[78] == 8944394323791464  # the last one below 2**53
    assert numbers[79] == "14472334024676221"
    assert numbers[80] == "23416728348467685"


def test_fibonacci_at_its_limit():
    numbers = call("fibonacci", n=2000)
    assert len(numbers) == 2000
    a, b = digits_to_int(numbers[-2]), digits_to_int(numbers[-1])
    assert digits_to_int(numbers[-3]) == b - a


def test_fibonacci_limits_are_enforced_by_schema_and_code():
    assert refused("fibonacci", n=2001)
    assert refused("fibonacci", n=-1)
    assert refused("fibonacci", n="10")
    assert refused("fibonacci", n=True)
    assert refused("fibonacci")
    with pytest.raises(ValueError):
        run("fibonacci", n=2001)
    with pytest.raises(TypeError):
        run("fibonacci", n="10")
    with pytest.raises(TypeError):
        run("fibonacci", n=True)
    with pytest.raises(ValueError):
        run("fibonacci", n=2.5)


def test_fibonacci_accepts_a_whole_float_as_json_may_deliver():
    assert call("fibonacci", n=5.0) == [0, 1, 1, 2, 3]


def test_factorial():
    assert call("factorial", n=0) == 1
    assert call("factorial", n=5) == 120
    assert call("factorial", n=18) == 6402373705728000
    assert call("factorial", n=19) == "121645100408832000"
    big = call("factorial", n=2000)
    assert len(big) == 5736
    assert digits_to_int(big) == math.factorial(2000)
    assert refused("factorial", n=2001)
    with pytest.raises(ValueError):
        run("factorial", 2001)


def test_is_prime_matches_trial_division_below_10000():
    def trial(n):
        return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))

    assert [n for n in range(-5, 10000) if run("is_prime", n)] == [n for n in range(-5, 10000) if trial(n)]


def test_is_prime_large_numbers():
    assert call("is_prime", n=9007199254740881) is True  # largest prime below 2**53
    assert call("is_prime", n=9007199254740991) is False  # 2**53 - 1 = 6361 * 69431 * 20394401
    assert call("is_prime", n=3215031751) is False  # strong pseudoprime to bases 2, 3, 5, 7
    assert call("is_prime", n=561) is False  # Carmichael number
    assert call("is_prime", n=2) is True
    assert call("is_prime", n=1) is False
    assert call("is_prime", n=0) is False
    assert call("is_prime", n=-7) is False
    assert refused("is_prime", n=2**53)


def test_prime_factors():
    assert call("prime_factors", n=1) == []
    assert call("prime_factors", n=2) == [2]
    assert call("prime_factors", n=12) == [2, 2, 3]
    assert call("prime_factors", n=600851475143) == [71, 839, 1471, 6857]
    assert call("prime_factors", n=999999999989) == [999999999989]
    assert call("prime_factors", n=10**12) == [2] * 12 + [5] * 12
    for n in range(1, 3000):
        factors = run("prime_factors", n)
        assert math.prod(factors) == n and factors == sorted(factors)
        assert all(run("is_prime", f) for f in factors)
    assert refused("prime_factors", n=0)
    assert refused("prime_factors", n=10**12 + 1)
    with pytest.raises(ValueError):
        run("prime_factors", 0)


def test_primes_up_to():
    assert call("primes_up_to", limit=0) == []
    assert call("primes_up_to", limit=1) == []
    assert call("primes_up_to", limit=2) == [2]
    assert call("primes_up_to", limit=30) == [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]
    primes = call("primes_up_to", limit=1_000_000)
    assert len(primes) == 78498 and primes[-1] == 999983
    assert refused("primes_up_to", limit=1_000_001)
    with pytest.raises(ValueError):
        run("primes_up_to", 1_000_001)


def test_gcd():
    assert call("gcd", a=12, b=18) == 6
    assert call("gcd", 18, 12) == 6
    assert call("gcd", a=-12, b=18) == 6
    assert call("gcd", a=7, b=0) == 7
    assert call("gcd", a=0, b=0) == 0
    assert refused("gcd", a=1)


def test_analyze_numbers_of_the_originals_pipeline():
    numbers = call("fibonacci", n=10)
    result = call("analyze_numbers", numbers=numbers)
    assert result["count"] == 10
    assert result["sum"] == 88 and isinstance(result["sum"], int)
    assert result["mean"] == pytest.approx(8.8)
    assert result["median"] == 4
    assert result["min"] == 0 and result["max"] == 34 and result["range"] == 34
    assert result["stdev"] == pytest.approx(statistics.stdev(numbers))
    assert result["variance"] == pytest.approx(statistics.variance(numbers))
    assert result["unique_count"] == 9


def test_analyze_numbers_edge_cases():
    empty = call("analyze_numbers", numbers=[])
    assert empty["count"] == 0 and empty["sum"] == 0 and empty["unique_count"] == 0
    assert all(empty[k] is None for k in ("mean", "median", "min", "max", "range", "variance", "stdev"))
    single = call("analyze_numbers", numbers=[2.5])
    assert single["mean"] == 2.5 and single["median"] == 2.5 and single["stdev"] is None
    mixed = call("analyze_numbers", numbers=[1, 2.5, -3])
    assert mixed["sum"] == pytest.approx(0.5) and mixed["median"] == 1 and mixed["min"] == -3
    even = call("analyze_numbers", numbers=[4, 1, 3, 2])
    assert even["median"] == 2.5
    assert call("analyze_numbers", numbers=[0.1] * 10)["sum"] == 1.0  # exact float summation
    assert refused("analyze_numbers", numbers=["1"])
    assert refused("analyze_numbers", numbers=[True])
    with pytest.raises(TypeError):
        run("analyze_numbers", [1, "2"])
    with pytest.raises(TypeError):
        run("analyze_numbers", [True])


# --------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------


def test_count_words():
    assert call("count_words", text="Hello world from Gleitzeit") == 4
    assert call("count_words", "one two three") == 3
    assert call("count_words", text="") == 0
    assert call("count_words", text=" \n\t ") == 0
    assert call("count_words", text="Don't stop-believing: 3.14, 1,000 -- ok?") == 5
    assert call("count_words", text="naïve café 東京") == 3


def test_extract_keywords():
    assert call("extract_keywords", text="Machine learning and AI", max_keywords=3) == ["machine", "learning", "ai"]
    text = "Rust is fast. Rust is safe. Python is friendly, and Python is everywhere. Rust wins."
    assert call("extract_keywords", text=text, max_keywords=2) == ["rust", "python"]
    assert call("extract_keywords", text=text) == ["rust", "python", "fast", "safe", "friendly"]
    assert call("extract_keywords", text="") == []
    assert call("extract_keywords", text="the and of it's 42 a b c") == []
    assert refused("extract_keywords", text="x", max_keywords=0)


def test_text_stats():
    empty = call("text_stats", text="")
    assert all(value == 0 for value in empty.values())
    text = "Hello world. How are you?\nFine!\n\nNew paragraph here"
    stats = call("text_stats", text=text)
    assert stats["character_count"] == len(text)
    assert stats["character_count_no_spaces"] == len("".join(text.split()))
    assert stats["word_count"] == 9
    assert stats["sentence_count"] == 4
    assert stats["line_count"] == 4
    assert stats["paragraph_count"] == 2
    assert stats["unique_words"] == 9
    assert stats["average_word_length"] == round(sum(map(len, "Hello world How are you Fine New paragraph here".split())) / 9, 2)
    assert stats["average_sentence_length"] == 2.25


def test_word_frequency():
    result = call("word_frequency", text="The cat and the hat. THE END, the cat.", top_n=2)
    assert result == {
        "total_words": 9,
        "unique_words": 5,
        "top_words": [{"word": "the", "count": 4}, {"word": "cat", "count": 2}],
    }
    ties = call("word_frequency", text="b a c a b c")
    assert [entry["word"] for entry in ties["top_words"]] == ["b", "a", "c"]
    filtered = call("word_frequency", text="the cat and the hat", ignore_stop_words=True)
    assert [entry["word"] for entry in filtered["top_words"]] == ["cat", "hat"]
    assert filtered["total_words"] == 5
    assert call("word_frequency", text="") == {"total_words": 0, "unique_words": 0, "top_words": []}
    assert refused("word_frequency", text="a", top_n=1001)


def test_case_and_reverse():
    assert call("uppercase", text="Straße ok") == "STRASSE OK"
    assert call("lowercase", text="ÄBC Def") == "äbc def"
    assert call("uppercase", text="") == "" and call("lowercase", text="") == ""
    assert call("reverse_text", text="abc") == "cba"
    assert call("reverse_text", text="") == ""
    assert call("reverse_text", text="ae\u0301b") == "be\u0301a"  # the accent stays on its e
    family = "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    assert call("reverse_text", text="x" + family + "y") == "y" + family + "x"
    sample = "Grüße, e\u0301 \u2764\ufe0f " + family + "!"
    assert call("reverse_text", text=call("reverse_text", text=sample)) == sample


def test_slugify():
    assert call("slugify", text="Hello, World!") == "hello-world"
    assert call("slugify", text="  Crème Brûlée à la carte  ") == "creme-brulee-a-la-carte"
    assert call("slugify", text="Straße Æsir Øresund") == "strasse-aesir-oresund"
    assert call("slugify", text="Hello World", separator="_") == "hello_world"
    assert call("slugify", text="") == ""
    assert call("slugify", text="東京 2024") == "2024"
    assert call("slugify", text="東京 Tower", allow_unicode=True) == "東京-tower"


def test_find_pattern():
    assert call("find_pattern", text="a1 b22 c333", pattern=r"\d+") == ["1", "22", "333"]
    assert call("find_pattern", text="a1 b22 c333", pattern=r"\d+", max_matches=2) == ["1", "22"]
    assert call("find_pattern", text="Cat cat CAT", pattern="cat", ignore_case=True) == ["Cat", "cat", "CAT"]
    assert call("find_pattern", text="Cat cat CAT", pattern="cat") == ["cat"]
    assert call("find_pattern", text="key=1, id=2", pattern=r"(\w+)=(\d)") == ["key=1", "id=2"]
    assert call("find_pattern", text="xx-x", pattern="x*") == ["xx", "x"]
    assert call("find_pattern", text="", pattern="a") == []
    assert len(call("find_pattern", text="a" * 20000, pattern="a", max_matches=10000)) == 10000
    with pytest.raises(ValueError, match="invalid pattern"):
        run("find_pattern", "text", "(unclosed")
    assert refused("find_pattern", text="a", pattern="")


def test_summarize_text():
    text = "First one. Second one!  Third\n one? Fourth."
    assert call("summarize_text", text=text, max_sentences=2) == "First one. Second one!"
    assert call("summarize_text", text=text) == "First one. Second one! Third one?"
    assert call("summarize_text", text=text, max_sentences=10) == "First one. Second one! Third one? Fourth."
    assert call("summarize_text", text="") == ""
    assert call("summarize_text", text="Title\n\nBody text. More.", max_sentences=2) == "Title Body text."
    assert call("summarize_text", text='He said "Stop." Then left.', max_sentences=1) == 'He said "Stop."'
    assert call("summarize_text", text="Pi is 3.14 exactly. Yes.", max_sentences=1) == "Pi is 3.14 exactly."


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------

PEOPLE_CSV = (
    'name,age,city\n'
    '"Smith, John",42,"New ""Big"" York"\n'
    'Ann,17,Berlin\n'
    '\n'
    '"Multi\nLine",30.0,Paris\n'
    'Bob,,Rome\n'
)


def test_csv_parse_with_quotes_newlines_and_blank_lines():
    parsed = call("csv_parse", csv_string=PEOPLE_CSV)
    assert parsed["columns"] == ["name", "age", "city"]
    assert parsed["count"] == 4
    assert parsed["records"][0] == {"name": "Smith, John", "age": "42", "city": 'New "Big" York'}
    assert parsed["records"][2]["name"] == "Multi\nLine"
    assert parsed["records"][3] == {"name": "Bob", "age": "", "city": "Rome"}


def test_csv_parse_infers_types_only_when_asked():
    text = "zip,n,x,e,flag,empty,word,nan\n01234,-3,2.5,1e3,true,,abc,NaN\n"
    typed = call("csv_parse", csv_string=text, infer_types=True)["records"][0]
    assert typed == {"zip": "01234", "n": -3, "x": 2.5, "e": 1000.0, "flag": True, "empty": None, "word": "abc", "nan": "NaN"}
    plain = call("csv_parse", csv_string=text)["records"][0]
    assert all(isinstance(value, str) for value in plain.values())


def test_csv_parse_edge_cases():
    assert call("csv_parse", csv_string="") == {"columns": [], "records": [], "count": 0}
    assert call("csv_parse", csv_string="a,b\n") == {"columns": ["a", "b"], "records": [], "count": 0}
    assert call("csv_parse", csv_string="a, b\n1, 2")["records"] == [{"a": "1", "b": "2"}]
    assert call("csv_parse", csv_string="a;b\n1;2", delimiter=";")["records"] == [{"a": "1", "b": "2"}]
    assert call("csv_parse", csv_string="a,b,c\n1")["records"] == [{"a": "1", "b": None, "c": None}]
    assert call("csv_parse", csv_string="a,b\r\n1,2\r\n")["records"] == [{"a": "1", "b": "2"}]
    with pytest.raises(ValueError, match="row 2 has 3 fields"):
        run("csv_parse", "a,b\n1,2,3")
    with pytest.raises(ValueError, match="twice: a"):
        run("csv_parse", "a,b,a\n1,2,3")
    assert refused("csv_parse", csv_string="a", delimiter=";;")


def test_csv_filter_as_in_the_originals_readme():
    adults = call("csv_filter", csv_string=PEOPLE_CSV, column="age", min_value=18)
    assert [row["name"] for row in adults] == ["Smith, John", "Multi\nLine"]
    assert adults[0]["city"] == 'New "Big" York'


def test_csv_filter_operators():
    rows = lambda **kw: [row["name"] for row in call("csv_filter", csv_string=PEOPLE_CSV, **kw)]
    assert rows(column="age", operator="gt", value=20) == ["Smith, John", "Multi\nLine"]
    assert rows(column="age", operator="gt", value="9") == ["Smith, John", "Ann", "Multi\nLine"]  # numeric, not text
    assert rows(column="age", operator="eq", value=30) == ["Multi\nLine"]  # "30.0" == 30
    assert rows(column="age", value="") == ["Bob"]
    assert rows(column="city", operator="ne", value="Berlin") == ["Smith, John", "Multi\nLine", "Bob"]
    assert rows(column="city", operator="lt", value="Q") == ["Smith, John", "Ann", "Multi\nLine"]
    assert rows(column="name", operator="contains", value="o") == ["Smith, John", "Bob"]
    assert rows(column="name", operator="startswith", value="A") == ["Ann"]
    assert rows(column="city", operator="endswith", value="York") == ["Smith, John"]
    assert rows(column="age", min_value=17, max_value=30) == ["Ann", "Multi\nLine"]
    assert rows(column="age") == ["Smith, John", "Ann", "Multi\nLine", "Bob"]
    typed = call("csv_filter", csv_string=PEOPLE_CSV, column="name", value="Ann", infer_types=True)
    assert typed == [{"name": "Ann", "age": 17, "city": "Berlin"}]


def test_csv_filter_errors():
    with pytest.raises(ValueError, match="no column 'weight'"):
        run("csv_filter", PEOPLE_CSV, "weight", value=1)
    with pytest.raises(ValueError, match="needs a value"):
        run("csv_filter", PEOPLE_CSV, "age", "gt")
    assert refused("csv_filter", csv_string="a", column="a", operator=">")
    with pytest.raises(ValueError):
        run("csv_filter", PEOPLE_CSV, "age", ">", 3)
    with pytest.raises(ValueError, match="no column"):
        run("csv_filter", "", "a")


def test_json_to_csv_and_back():
    records = [
        {"name": "Smith, John", "age": 42, "note": 'says "hi"'},
        {"name": "Ann", "age": None, "tags": ["a", "b"], "ok": True},
    ]
    text = call("json_to_csv", records=records)
    assert text.splitlines()[0] == "name,age,note,tags,ok"
    assert text.endswith("\n")
    back = call("csv_parse", csv_string=text)
    assert back["records"] == [
        {"name": "Smith, John", "age": "42", "note": 'says "hi"', "tags": "", "ok": ""},
        {"name": "Ann", "age": "", "note": "", "tags": '["a","b"]', "ok": "true"},
    ]
    assert call("json_to_csv", records=records, columns=["age", "name"], delimiter=";") == "age;name\n42;Smith, John\n;Ann\n"
    assert call("json_to_csv", records=[]) == ""
    assert call("json_to_csv", records=[], columns=["a"]) == "a\n"
    assert call("json_to_csv", records=[{"text": "line1\nline2"}]) == 'text\n"line1\nline2"\n'


def test_json_query():
    data = {"items": [{"name": "x", "tags": ["a", "b"]}, {"name": "y"}], "0": "zero", "n": None}
    assert call("json_query", data=data, path="items[1].name") == "y"
    assert call("json_query", data=data, path="items.1.name") == "y"
    assert call("json_query", data=data, path="items[0].tags[-1]") == "b"
    assert call("json_query", data=data, path="items.-2.name") == "x"
    assert call("json_query", data=data, path="[0]") == "zero"
    assert call("json_query", data=data, path="n") is None
    assert call("json_query", data=data, path="") == data
    assert call("json_query", data=[1, [2, 3]], path="[1][0]") == 2
    assert call("json_query", data=data, path="items.5", default=0) == 0
    assert call("json_query", data=data, path="items.0.nope", default=None) is None
    assert call("json_query", data=5, path="a", default="none") == "none"
    with pytest.raises(LookupError, match="not found"):
        run("json_query", data, "items.0.nope")
    with pytest.raises(LookupError):
        run("json_query", data, "items.name")
    for bad in ("a..b", ".a", "a.", "a[x]", "a]"):
        with pytest.raises(ValueError, match="invalid path"):
            run("json_query", data, bad)


def test_validate_json():
    assert call("validate_json", json_string='{"a": [1, 2]}') == {"valid": True, "data": {"a": [1, 2]}, "error": None, "line": None, "column": None}
    assert call("validate_json", json_string="null")["data"] is None
    bad = call("validate_json", json_string='{\n  "a": [1,\n}')
    assert bad["valid"] is False and bad["line"] == 3 and bad["column"] == 1 and bad["error"]
    assert call("validate_json", json_string="")["valid"] is False
    assert call("validate_json", json_string="[" * 64 + "]" * 64)["valid"] is True
    assert call("validate_json", json_string="[" * 65 + "]" * 65)["error"] == "nested deeper than 64 levels"
    assert call("validate_json", json_string="[" * 100000)["valid"] is False


def test_sort_records():
    records = [{"k": 3, "i": 0}, {"k": "a", "i": 1}, {"i": 2}, {"k": 1, "i": 3}, {"k": None, "i": 4}, {"k": 3, "i": 5}, {"k": True, "i": 6}]
    ascending = call("sort_records", records=records, field="k")
    assert [r["i"] for r in ascending] == [3, 0, 5, 1, 6, 2, 4]
    descending = call("sort_records", records=records, field="k", descending=True)
    assert [r["i"] for r in descending] == [6, 1, 0, 5, 3, 2, 4]  # stable, missing still last
    assert call("sort_records", records=[], field="k") == []
    assert records[0] == {"k": 3, "i": 0}


def test_group_by():
    records = [{"city": "Rome", "n": 1}, {"city": "Oslo", "n": 2}, {"city": "Rome", "n": 3}, {"n": 4}, {"city": 42, "n": 5}, {"city": True}]
    groups = call("group_by", records=records, field="city")
    assert groups == {
        "Rome": [{"city": "Rome", "n": 1}, {"city": "Rome", "n": 3}],
        "Oslo": [{"city": "Oslo", "n": 2}],
        "null": [{"n": 4}],
        "42": [{"city": 42, "n": 5}],
        "true": [{"city": True}],
    }
    assert call("group_by", records=[], field="x") == {}


def test_merge_dicts():
    first, second = {"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "c": 4}
    assert call("merge_dicts", dicts=[first, second]) == {"a": {"y": 3}, "b": 1, "c": 4}
    assert call("merge_dicts", dicts=[first, second], deep=True) == {"a": {"x": 1, "y": 3}, "b": 1, "c": 4}
    assert first == {"a": {"x": 1, "y": 2}, "b": 1}  # inputs untouched
    assert call("merge_dicts", dicts=[]) == {}
    assert refused("merge_dicts", dicts=[1])
    with pytest.raises(TypeError):
        run("merge_dicts", [{"a": 1}, [2]])


def test_flatten_list():
    nested = [1, [2, [3, [4]]], [], 5]
    assert call("flatten_list", items=nested) == [1, 2, 3, 4, 5]
    assert call("flatten_list", items=nested, depth=1) == [1, 2, [3, [4]], 5]
    assert call("flatten_list", items=nested, depth=0) == nested
    assert call("flatten_list", items=[]) == []
    deep = [0]
    for _ in range(100):
        deep = [deep]
    assert run("flatten_list", deep) == [0]


def test_unique_values():
    assert call("unique_values", items=[3, 1, 3, 2, 1]) == [3, 1, 2]
    assert call("unique_values", items=[1, 1.0, True, "1", None, None]) == [1, 1.0, True, "1", None]
    assert call("unique_values", items=[{"a": 1, "b": 2}, {"b": 2, "a": 1}, [1], [1]]) == [{"a": 1, "b": 2}, [1]]
    assert call("unique_values", items=[]) == []


def test_chunk_list():
    assert call("chunk_list", items=[1, 2, 3, 4, 5], size=2) == [[1, 2], [3, 4], [5]]
    assert call("chunk_list", items=[1, 2], size=5) == [[1, 2]]
    assert call("chunk_list", items=[], size=3) == []
    assert refused("chunk_list", items=[1], size=0)
    with pytest.raises(ValueError):
        run("chunk_list", [1], 0)


def test_pluck_feeds_analyze_numbers():
    records = call("csv_parse", csv_string="name,score\na,3\nb,\nc,5\n", infer_types=True)["records"]
    assert call("pluck", records=records, field="score") == [3, None, 5]
    scores = call("pluck", records=records, field="score", skip_missing=True)
    assert scores == [3, 5]
    assert call("analyze_numbers", numbers=scores)["mean"] == 4
    assert call("pluck", records=[{"a": 1}, {}], field="a") == [1, None]


# --------------------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------------------


def test_parse_date():
    parts = call("parse_date", date="2024-02-29T13:45:30.5+01:00")
    assert parts["iso"] == "2024-02-29T13:45:30.500000+01:00"
    assert (parts["year"], parts["month"], parts["day"]) == (2024, 2, 29)
    assert (parts["hour"], parts["minute"], parts["second"], parts["microsecond"]) == (13, 45, 30, 500000)
    assert parts["weekday"] == "Thursday" and parts["weekday_number"] == 4
    assert parts["day_of_year"] == 60 and parts["iso_week"] == 9 and parts["iso_year"] == 2024
    assert parts["utc_offset"] == "+01:00"
    assert parts["timestamp"] == 1709210730.5
    plain = call("parse_date", date="1970-01-01")
    assert plain["timestamp"] == 0 and isinstance(plain["timestamp"], int) and plain["utc_offset"] is None
    assert plain["time"] == "00:00:00" and plain["weekday"] == "Thursday"
    assert call("parse_date", date="2021-01-03T10:00Z")["iso_week"] == 53
    assert call("parse_date", date="2021-01-03 10:00:00-0530")["utc_offset"] == "-05:30"
    for bad in ("2023-02-29", "2024-13-01", "29.02.2024", "2024-02-29T25:00", "2024-02-29T10:00+24:00", "", "tomorrow"):
        with pytest.raises(ValueError):
            run("parse_date", bad)


def test_format_date():
    moment = "2024-02-29T13:05:09.25+01:00"
    assert call("format_date", date=moment) == "2024-02-29"
    assert call("format_date", date=moment, format="%A, %d %B %Y %I:%M:%S %p %z") == "Thursday, 29 February 2024 01:05:09 PM +0100"
    assert call("format_date", date=moment, format="%a %b %e %y %j %u %w %G-W%V %F %T.%f %% done") == (
        "Thu Feb 29 24 060 4 4 2024-W09 2024-02-29 13:05:09.250000 % done"
    )
    assert call("format_date", date="2024-03-03", format="%w %u %z|") == "0 7 |"
    assert call("format_date", date="2024-01-01", format="") == ""
    for bad in ("%c", "%x", "100%", "%Q"):
        with pytest.raises(ValueError):
            run("format_date", moment, bad)


def test_date_difference():
    assert call("date_difference", start="2024-01-01", end="2024-03-01") == 60
    assert call("date_difference", start="2024-03-01", end="2024-01-01") == -60
    assert call("date_difference", start="2024-01-01T00:00:00Z", end="2024-01-01T01:30:00+01:00", unit="hours") == 0.5
    assert call("date_difference", start="2024-01-01", end="2024-01-15", unit="weeks") == 2
    assert call("date_difference", start="2024-01-01", end="2024-01-02T12:00", unit="days") == 1.5
    assert call("date_difference", start="2024-01-01", end="2024-01-01T00:00:00.5", unit="seconds") == 0.5
    assert refused("date_difference", start="2024-01-01", end="2024-01-02", unit="months")
    with pytest.raises(ValueError):
        run("date_difference", "2024-01-01", "2024-01-02", "months")


# --------------------------------------------------------------------------------------
# Determinism, and a real worker
# --------------------------------------------------------------------------------------

EXAMPLES = [
    ("fibonacci", {"n": 90}),
    ("factorial", {"n": 30}),
    ("analyze_numbers", {"numbers": [3, 1.5, 9, 9]}),
    ("extract_keywords", {"text": "b a c b a b c d"}),
    ("word_frequency", {"text": "x y z y"}),
    ("csv_parse", {"csv_string": PEOPLE_CSV, "infer_types": True}),
    ("group_by", {"records": [{"a": 2}, {"a": 1}, {"a": 2}], "field": "a"}),
    ("unique_values", {"items": [{"b": 1, "a": 2}, {"a": 2, "b": 1}]}),
    ("parse_date", {"date": "2000-02-29T23:59:59.999999-12:00"}),
    ("format_date", {"date": "1999-12-31", "format": "%A %B"}),
]


@pytest.mark.parametrize("name, kwargs", EXAMPLES)
def test_same_arguments_same_result_in_a_fresh_namespace(name, kwargs):
    first = json.dumps(call(name, **kwargs))
    again = load_builtins()["_gz_call"]({"function_name": name, "kwargs": kwargs})
    assert json.dumps(again) == first


@pytest.fixture(scope="module")
def worker():
    """The provider's own worker.py, run as the pool runs it, speaking its line protocol."""
    if not sys.platform.startswith("linux") or not WORKER_PY.exists():
        pytest.skip("needs Linux and services/python-provider/src/worker.py")
    process = subprocess.Popen(
        [sys.executable, "-u", str(WORKER_PY), json.dumps({"max_output": 16 << 20})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    ready = json.loads(process.stdout.readline())
    assert ready["status"] == "ready"
    sequence = iter(range(1, 1000))

    def job(context):
        seq = next(sequence)
        request = {"seq": seq, "code": SOURCE + "\nresult = _gz_call(context)\n", "context": context}
        process.stdin.write(json.dumps(request).encode() + b"\n")
        process.stdin.flush()
        reply = json.loads(process.stdout.readline())
        assert reply["seq"] == seq
        return reply

    yield job
    process.stdin.close()
    process.wait(timeout=10)


def test_worker_runs_built_ins_and_returns_plain_json(worker):
    reply = worker({"function_name": "fibonacci", "kwargs": {"n": 10}})
    assert reply["status"] == "ok" and reply["result"] == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    assert reply["output"] == ""
    reply = worker({"function_name": "count_words", "args": ["one two three"]})
    assert reply["result"] == 3
    reply = worker({"function_name": "factorial", "kwargs": {"n": 2000}})
    assert reply["status"] == "ok" and digits_to_int(reply["result"]) == math.factorial(2000)
    reply = worker({"function_name": "csv_filter", "kwargs": {"csv_string": PEOPLE_CSV, "column": "age", "min_value": 18}})
    assert [row["name"] for row in reply["result"]] == ["Smith, John", "Multi\nLine"]


def test_worker_reports_unknown_and_private_functions_as_errors(worker):
    for name in ("no_such_function", "_exact", "__import__"):
        reply = worker({"function_name": name})
        assert reply["status"] == "error" and reply["kind"] == "exception"
        assert reply["message"] == "LookupError: unknown built-in function: %s" % name
    reply = worker({"function_name": "fibonacci", "kwargs": {"n": 5000}})
    assert reply["status"] == "error" and "ValueError" in reply["message"]
