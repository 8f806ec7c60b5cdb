"""Built-in functions of Gleitzeit's python-provider (method python/function, service "builtin").

protocols/functions.yaml is their catalogue: for each public function here its category, its
description (the first line of the function's docstring), the JSON Schema of its arguments
(properties in the order of the parameters) and of what it returns. The provider checks a
call against that schema, then runs this source in a warm worker followed by
`result = _gz_call(context)`, with `context = {"function_name", "args", "kwargs"}`.

What holds for every function here:
- standard library only, no I/O, nothing done at import but definitions;
- deterministic: the same arguments give the same result on any machine, any day, in any
  locale (no clock, no randomness, no locale-dependent formatting);
- bounded work: the catalogue caps every size, and the functions whose cost grows fastest
  check their own caps too, so a call cannot ask for unbounded work;
- results are plain JSON values. An integer beyond +-(2**53 - 1), which not every JSON reader
  keeps exact, is returned as a string of decimal digits.
"""

import csv
import io
import json
import math
import re
import unicodedata
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple, Union

# Largest integer every JSON reader represents exactly (IEEE double, RFC 7493 section 2.2).
_SAFE_INTEGER = 2**53 - 1
# Digits per step when writing big integers: str() refuses more than 4300 digits at once
# (Python 3.11+), and this keeps every step well under that.
_DECIMAL_CHUNK = 1000
# JSON nested deeper than this is refused: the provider's JSON readers stop at 128 levels,
# and a result travels inside a few levels of envelope.
_MAX_JSON_DEPTH = 64
# Marks "no default given" for json_query.
_NO_DEFAULT = object()


def _exact(number: int) -> Union[int, str]:
    """`number` itself when JSON readers keep it exact, else its decimal digits."""
    if -_SAFE_INTEGER <= number <= _SAFE_INTEGER:
        return number
    if number < 0:
        return "-" + _exact(-number)
    chunk = 10**_DECIMAL_CHUNK
    parts = []
    while number >= chunk:
        number, low = divmod(number, chunk)
        parts.append(str(low).zfill(_DECIMAL_CHUNK))
    parts.append(str(number))
    return "".join(reversed(parts))


def _integer(name: str, value: Any, low: int, high: int) -> int:
    """`value` as an int within [low, high]; a whole float (10.0) counts as an integer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("%s must be an integer, not %s" % (name, type(value).__name__))
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("%s must be a whole number, not %r" % (name, value))
        value = int(value)
    if value < low or value > high:
        raise ValueError("%s must be between %d and %d, not %d" % (name, low, high, value))
    return value


def _json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), computed without recursion."""
    deepest = 0
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        todo.extend((child, depth + 1) for child in children)
    return deepest


def _json_text(value: Any) -> str:
    """Compact JSON text of a value, with keys sorted (a stable identity for any value)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------
# math
# ---------------------------------------------------------------------------------------


def fibonacci(n: int) -> List[Union[int, str]]:
    """First n Fibonacci numbers, starting 0, 1.

    Numbers beyond 2**53 - 1 (from the 80th on) are given as decimal strings.
    """
    n = _integer("n", n, 0, 2000)
    numbers = []
    current, following = 0, 1
    for _ in range(n):
        numbers.append(_exact(current))
        current, following = following, current + following
    return numbers


def factorial(n: int) -> Union[int, str]:
    """n! (the product 1 * 2 * ... * n; 0! is 1).

    Results beyond 2**53 - 1 (from 19! on) are given as decimal strings.
    """
    return _exact(math.factorial(_integer("n", n, 0, 2000)))


# Witnesses that make Miller-Rabin exact for every n below 3.3 * 10**24.
_PRIME_WITNESSES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)


def is_prime(n: int) -> bool:
    """Whether n is a prime number.

    Exact for the whole range: a deterministic Miller-Rabin test.
    """
    n = _integer("n", n, -_SAFE_INTEGER, _SAFE_INTEGER)
    if n < 2:
        return False
    for p in _PRIME_WITNESSES:
        if n % p == 0:
            return n == p
    odd, twos = n - 1, 0
    while odd % 2 == 0:
        odd //= 2
        twos += 1
    for witness in _PRIME_WITNESSES:
        x = pow(witness, odd, n)
        if x in (1, n - 1):
            continue
        for _ in range(twos - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def prime_factors(n: int) -> List[int]:
    """Prime factors of n in ascending order, repeated by multiplicity (12 -> [2, 2, 3])."""
    n = _integer("n", n, 1, 10**12)
    factors = []
    for p in (2, 3):
        while n % p == 0:
            factors.append(p)
            n //= p
    candidate = 5
    while candidate * candidate <= n:
        for p in (candidate, candidate + 2):
            while n % p == 0:
                factors.append(p)
                n //= p
        candidate += 6
    if n > 1:
        factors.append(n)
    return factors


def primes_up_to(limit: int) -> List[int]:
    """All prime numbers less than or equal to limit, ascending."""
    limit = _integer("limit", limit, 0, 1_000_000)
    if limit < 2:
        return []
    sieve = bytearray([1]) * (limit + 1)
    sieve[0] = sieve[1] = 0
    for p in range(2, math.isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, limit + 1, p)))
    return [number for number, flag in enumerate(sieve) if flag]


def gcd(a: int, b: int) -> int:
    """Greatest common divisor of a and b (never negative; gcd(0, 0) is 0)."""
    a = _integer("a", a, -_SAFE_INTEGER, _SAFE_INTEGER)
    b = _integer("b", b, -_SAFE_INTEGER, _SAFE_INTEGER)
    return math.gcd(a, b)


def analyze_numbers(numbers: List[float]) -> Dict[str, Any]:
    """Statistics of a list of numbers: count, sum, mean, median, min, max, range, variance, stdev.

    `variance` and `stdev` are those of a sample (divided by count - 1) and null for fewer
    than two numbers; for an empty list every statistic but count, sum and unique_count is
    null. The sum and range of integers stay integers.
    """
    values = list(numbers)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("numbers must hold numbers only, not %s" % type(value).__name__)
    count = len(values)
    if all(isinstance(value, int) for value in values):
        total: Union[int, float, str] = _exact(sum(values))
    else:
        total = math.fsum(values)
    result: Dict[str, Any] = {
        "count": count,
        "sum": total,
        "mean": None,
        "median": None,
        "min": None,
        "max": None,
        "range": None,
        "variance": None,
        "stdev": None,
        "unique_count": len(set(values)),
    }
    if count == 0:
        return result
    ordered = sorted(values)
    middle = count // 2
    mean = math.fsum(values) / count
    result["mean"] = mean
    if count % 2:
        result["median"] = ordered[middle]
    else:
        result["median"] = (ordered[middle - 1] + ordered[middle]) / 2
    result["min"] = ordered[0]
    result["max"] = ordered[-1]
    spread = ordered[-1] - ordered[0]
    result["range"] = _exact(spread) if isinstance(spread, int) else spread
    if count > 1:
        variance = math.fsum((value - mean) ** 2 for value in values) / (count - 1)
        result["variance"] = variance
        result["stdev"] = math.sqrt(variance)
    return result


# ---------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------

# A word: letters, digits or underscores, joined inside by apostrophes or hyphens
# ("don't", "state-of-the-art"), and by a point or comma between digits ("3.14", "1,000").
_WORD = re.compile(r"\w+(?:(?:['\u2019\-]|(?<=\d)[.,](?=\d))\w+)*")
# Where one sentence ends and the next begins: whitespace after ., !, ? or an ellipsis
# (optionally closed by a quote or bracket), or a blank line.
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?\u2026])|(?<=[.!?\u2026][\"'\u201d\u2019)\]]))\s+|\n[ \t\r\f\v]*\n\s*"
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_WHITESPACE = re.compile(r"\s+")

# Common English words that carry no topic, left out of keywords.
_STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing done down during
    each even ever every few for from further get gets got had has have having he her here
    hers herself him himself his how however i if in into is it its itself just let like
    made make many may me might more most much must my myself need no nor not now of off
    often on once only or other our ours ourselves out over own per quite rather really
    same say says shall she should since so some still such than that the their theirs them
    themselves then there these they this those though through thus to too under until up
    upon us use used using very via was we well were what when where whether which while
    who whom whose why will with within without would yet you your yours yourself
    yourselves it's don't doesn't isn't aren't wasn't weren't can't won't i'm you're we're
    they're he's she's that's there's let's i've you've we've they've i'd you'd we'd
    they'd i'll you'll we'll they'll
    """.split()
)


def _words(text: str) -> List[str]:
    return _WORD.findall(text)


def _sentences(text: str) -> List[str]:
    """Sentences of a text, each with its whitespace collapsed; pieces without a word left out."""
    pieces = (_WHITESPACE.sub(" ", piece).strip() for piece in _SENTENCE_BREAK.split(text))
    return [piece for piece in pieces if _WORD.search(piece)]


def _normal_word(word: str) -> str:
    return word.lower().replace("\u2019", "'")


def count_words(text: str) -> int:
    """Number of words in a text."""
    return len(_words(text))


def extract_keywords(text: str, max_keywords: int = 5) -> List[str]:
    """Most frequent words of a text that are not common English stop words, lowercased.

    Words of one character and numbers are left out; ties go to the word that comes first.
    """
    max_keywords = _integer("max_keywords", max_keywords, 1, 100)
    counts: Counter = Counter()
    first_seen: Dict[str, int] = {}
    for position, word in enumerate(_normal_word(w) for w in _words(text)):
        if len(word) < 2 or word in _STOP_WORDS or not any(c.isalpha() for c in word):
            continue
        counts[word] += 1
        first_seen.setdefault(word, position)
    ranked = sorted(counts, key=lambda word: (-counts[word], first_seen[word]))
    return ranked[:max_keywords]


def text_stats(text: str) -> Dict[str, Any]:
    """Statistics of a text: characters, words, sentences, lines, paragraphs, average lengths."""
    words = _words(text)
    sentences = _sentences(text)
    paragraphs = [p for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    word_lengths = sum(len(word) for word in words)
    return {
        "character_count": len(text),
        "character_count_no_spaces": sum(1 for c in text if not c.isspace()),
        "word_count": len(words),
        "unique_words": len({_normal_word(word) for word in words}),
        "sentence_count": len(sentences),
        "line_count": len(text.splitlines()),
        "paragraph_count": len(paragraphs),
        "average_word_length": round(word_lengths / len(words), 2) if words else 0.0,
        "average_sentence_length": round(len(words) / len(sentences), 2) if sentences else 0.0,
    }


def word_frequency(text: str, top_n: int = 10, ignore_stop_words: bool = False) -> Dict[str, Any]:
    """The top_n most frequent words of a text (lowercased) with their counts.

    Ties go to the word that comes first in the text.
    """
    top_n = _integer("top_n", top_n, 1, 1000)
    words = [_normal_word(word) for word in _words(text)]
    counts: Counter = Counter()
    first_seen: Dict[str, int] = {}
    for position, word in enumerate(words):
        if ignore_stop_words and word in _STOP_WORDS:
            continue
        counts[word] += 1
        first_seen.setdefault(word, position)
    ranked = sorted(counts, key=lambda word: (-counts[word], first_seen[word]))
    return {
        "total_words": len(words),
        "unique_words": len(set(words)),
        "top_words": [{"word": word, "count": counts[word]} for word in ranked[:top_n]],
    }


def uppercase(text: str) -> str:
    """The text in upper case."""
    return text.upper()


def lowercase(text: str) -> str:
    """The text in lower case."""
    return text.lower()


def reverse_text(text: str) -> str:
    """The text backwards, keeping accents and joined emoji with their characters."""
    clusters: List[str] = []
    for char in text:
        joins = (
            unicodedata.combining(char)
            or "\ufe00" <= char <= "\ufe0f"
            or char == "\u200d"
            or (clusters and clusters[-1].endswith("\u200d"))
        )
        if joins and clusters:
            clusters[-1] += char
        else:
            clusters.append(char)
    return "".join(reversed(clusters))


# Latin letters that Unicode does not decompose into a base letter and an accent.
_LATIN_LETTERS = str.maketrans(
    {"\u00e6": "ae", "\u0153": "oe", "\u00f8": "o", "\u0111": "d", "\u00f0": "d",
     "\u0142": "l", "\u00fe": "th", "\u0131": "i"}
)


def slugify(text: str, separator: str = "-", allow_unicode: bool = False) -> str:
    """A URL-friendly slug of a text: its words in lower case, joined by a separator.

    "Hello, World!" becomes "hello-world". Accents are dropped; letters without an ASCII
    form are dropped too, unless allow_unicode is true.
    """
    folded = text.casefold()
    if allow_unicode:
        words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", folded))
    else:
        ascii_text = unicodedata.normalize("NFKD", folded.translate(_LATIN_LETTERS))
        words = re.findall(r"[a-z0-9]+", ascii_text.encode("ascii", "ignore").decode("ascii"))
    return separator.join(words)


def find_pattern(text: str, pattern: str, max_matches: int = 100, ignore_case: bool = False) -> List[str]:
    """Matches of a regular expression (Python syntax) in a text, at most max_matches.

    Each match is the whole matched text; empty matches are left out.
    """
    max_matches = _integer("max_matches", max_matches, 1, 10_000)
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as error:
        raise ValueError("invalid pattern %r: %s" % (pattern, error)) from None
    matches: List[str] = []
    for match in compiled.finditer(text):
        if match.group(0):
            matches.append(match.group(0))
            if len(matches) == max_matches:
                break
    return matches


def summarize_text(text: str, max_sentences: int = 3) -> str:
    """The first max_sentences sentences of a text, joined by spaces."""
    max_sentences = _integer("max_sentences", max_sentences, 1, 1000)
    return " ".join(_sentences(text)[:max_sentences])


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------

_CSV_INTEGER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_CSV_DECIMAL = re.compile(r"[+-]?(?:0|[1-9][0-9]*)?(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _typed_cell(cell: Optional[str]) -> Any:
    """A CSV cell as JSON data: numbers without leading zeros, true/false, empty as null."""
    if cell is None or cell == "":
        return None
    if cell in ("true", "false"):
        return cell == "true"
    if _CSV_INTEGER.fullmatch(cell):
        number = int(cell)
        return number if -_SAFE_INTEGER <= number <= _SAFE_INTEGER else cell
    if _CSV_DECIMAL.fullmatch(cell) and any(c.isdigit() for c in cell):
        number = float(cell)
        return number if math.isfinite(number) else cell
    return cell


def _read_csv(csv_string: str, delimiter: str) -> Tuple[List[str], List[Dict[str, Optional[str]]]]:
    """Header (names stripped) and rows of CSV text; short rows get None for missing cells.

    Blank lines are skipped.
    """
    if len(delimiter) != 1:
        raise ValueError("delimiter must be one character, not %r" % delimiter)
    reader = csv.reader(io.StringIO(csv_string, newline=""), delimiter=delimiter, skipinitialspace=True)
    try:
        lines = [row for row in reader if row and row != [""]]
    except csv.Error as error:
        raise ValueError("CSV line %d: %s" % (reader.line_num, error)) from None
    if not lines:
        return [], []
    columns = [name.strip() for name in lines[0]]
    duplicates = sorted(name for name, times in Counter(columns).items() if times > 1)
    if duplicates:
        raise ValueError("CSV header names a column twice: %s" % ", ".join(duplicates))
    rows = []
    for number, row in enumerate(lines[1:], start=2):
        if len(row) > len(columns):
            raise ValueError(
                "CSV row %d has %d fields, the header only %d" % (number, len(row), len(columns))
            )
        cells: List[Optional[str]] = list(row) + [None] * (len(columns) - len(row))
        rows.append(dict(zip(columns, cells)))
    return columns, rows


def _typed_rows(rows: List[Dict[str, Optional[str]]], infer_types: bool) -> List[Dict[str, Any]]:
    if not infer_types:
        return rows
    return [{key: _typed_cell(cell) for key, cell in row.items()} for row in rows]


def csv_parse(csv_string: str, delimiter: str = ",", infer_types: bool = False) -> Dict[str, Any]:
    """CSV text (first row = header) as records: {columns, records, count}.

    Cells stay strings unless infer_types is true. `columns` keeps the header's order, which
    JSON objects may not.
    """
    columns, rows = _read_csv(csv_string, delimiter)
    records = _typed_rows(rows, infer_types)
    return {"columns": columns, "records": records, "count": len(records)}


def _as_number(value: Any) -> Optional[float]:
    """A cell or filter value as a finite number, or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_STRING_OPERATORS = {
    "contains": lambda cell, wanted: wanted in cell,
    "startswith": lambda cell, wanted: cell.startswith(wanted),
    "endswith": lambda cell, wanted: cell.endswith(wanted),
}
_ORDER_OPERATORS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
}


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _cell_matches(cell: Optional[str], operator: str, value: Any) -> bool:
    if cell is None:
        return False
    if operator in _STRING_OPERATORS:
        return _STRING_OPERATORS[operator](cell, _value_text(value))
    compare = _ORDER_OPERATORS[operator]
    cell_number, wanted_number = _as_number(cell), _as_number(value)
    if cell_number is not None and wanted_number is not None:
        return compare(cell_number, wanted_number)
    return compare(cell, _value_text(value))


def csv_filter(
    csv_string: str,
    column: str,
    operator: str = "eq",
    value: Union[str, float, None] = None,
    min_value: Optional[float] = None,
    max_value: Optional[float] = None,
    delimiter: str = ",",
    infer_types: bool = False,
) -> List[Dict[str, Any]]:
    """Rows of CSV text whose column passes a test, as records.

    Every condition given must hold: `operator` with `value` (numbers compare as numbers
    when both sides are numeric, otherwise as text), and the inclusive numeric bounds
    min_value and max_value (a cell that is not a number fails them).
    """
    if operator not in _ORDER_OPERATORS and operator not in _STRING_OPERATORS:
        raise ValueError("unknown operator %r" % operator)
    if value is None and operator != "eq":
        raise ValueError("operator %r needs a value" % operator)
    columns, rows = _read_csv(csv_string, delimiter)
    if column not in columns:
        raise ValueError("no column %r; the columns are: %s" % (column, ", ".join(columns)))
    kept = []
    for row in rows:
        cell = row[column]
        if value is not None and not _cell_matches(cell, operator, value):
            continue
        if min_value is not None or max_value is not None:
            number = _as_number(cell)
            if number is None:
                continue
            if min_value is not None and number < min_value:
                continue
            if max_value is not None and number > max_value:
                continue
        kept.append(row)
    return _typed_rows(kept, infer_types)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_to_csv(records: List[Dict[str, Any]], columns: Optional[List[str]] = None, delimiter: str = ",") -> str:
    """Records (a list of objects) as CSV text with a header row.

    Columns are the given ones, or every key in the order first seen; null is an empty cell,
    nested values are written as JSON. Lines end with a newline.
    """
    if len(delimiter) != 1:
        raise ValueError("delimiter must be one character, not %r" % delimiter)
    if columns is None:
        seen: Dict[str, None] = {}
        for record in records:
            for key in record:
                seen.setdefault(key, None)
        columns = list(seen)
    if not columns:
        return ""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(column)) for column in columns])
    return out.getvalue()


_PATH_INDEX = re.compile(r"\[(-?[0-9]+)\]")
_PATH_KEY = re.compile(r"[^.\[\]]+")
_INDEX_TEXT = re.compile(r"-?[0-9]+")


def _path_steps(path: str) -> List[Union[str, int]]:
    """`a.b[0].c` or `a.b.0.c` as steps ["a", "b", 0, "c"]; "" is the whole value."""
    steps: List[Union[str, int]] = []
    position = 0
    while position < len(path):
        index = _PATH_INDEX.match(path, position)
        if index:
            steps.append(int(index.group(1)))
            position = index.end()
            continue
        if steps:
            if path[position] != ".":
                raise ValueError("invalid path %r at position %d" % (path, position))
            position += 1
        key = _PATH_KEY.match(path, position)
        if not key:
            raise ValueError("invalid path %r at position %d" % (path, position))
        steps.append(key.group(0))
        position = key.end()
    return steps


def json_query(data: Any, path: str, default: Any = _NO_DEFAULT) -> Any:
    """The value at a dotted path in JSON data.

    Paths look like "items[0].name" or "items.0.name"; "" is the whole value. Negative indices count from the end. A missing path returns `default` when given and
    is an error otherwise.
    """
    current = data
    for depth, step in enumerate(_path_steps(path)):
        found = False
        kind = "object" if isinstance(current, dict) else "array" if isinstance(current, list) else "scalar"
        if isinstance(current, dict):
            key = str(step)
            if key in current:
                current, found = current[key], True
        elif isinstance(current, list):
            if isinstance(step, int) or _INDEX_TEXT.fullmatch(step):
                index = int(step)
                if -len(current) <= index < len(current):
                    current, found = current[index], True
        if not found:
            if default is not _NO_DEFAULT:
                return default
            raise LookupError(
                "path %r not found: the %s reached after %d step(s) has no %r" % (path, kind, depth, step)
            )
    return current


def validate_json(json_string: str) -> Dict[str, Any]:
    """Parses JSON text: whether it is valid, the data, or where and why it is not."""
    too_deep = {
        "valid": False,
        "data": None,
        "error": "nested deeper than %d levels" % _MAX_JSON_DEPTH,
        "line": None,
        "column": None,
    }
    try:
        data = json.loads(json_string)
    except json.JSONDecodeError as error:
        return {"valid": False, "data": None, "error": error.msg, "line": error.lineno, "column": error.colno}
    except RecursionError:
        return too_deep
    if _json_depth(data) > _MAX_JSON_DEPTH:
        return too_deep
    return {"valid": True, "data": data, "error": None, "line": None, "column": None}


def _sort_key(value: Any) -> tuple:
    """Orders values of mixed types: numbers, then strings, then booleans, then the rest."""
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (3, _json_text(value))


def sort_records(records: List[Dict[str, Any]], field: str, descending: bool = False) -> List[Dict[str, Any]]:
    """Records sorted by the value of one field; records without it (or with null) come last.

    The sort is stable. Mixed types order as numbers, strings, booleans, then others.
    """
    present = [record for record in records if record.get(field) is not None]
    absent = [record for record in records if record.get(field) is None]
    present.sort(key=lambda record: _sort_key(record[field]), reverse=descending)
    return present + absent


def _group_name(value: Any) -> str:
    return value if isinstance(value, str) else _json_text(value)


def group_by(records: List[Dict[str, Any]], field: str) -> Dict[str, List[Dict[str, Any]]]:
    """Records grouped by the value of one field: {value: [records]}.

    Non-string values are named by their JSON text (42, true); a missing field groups as "null".
    """
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(_group_name(record.get(field)), []).append(record)
    return groups


def _merge(base: Dict[str, Any], update: Dict[str, Any], deep: bool) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if deep and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, deep)
        else:
            merged[key] = value
    return merged


def merge_dicts(dicts: List[Dict[str, Any]], deep: bool = False) -> Dict[str, Any]:
    """Objects merged into one; later ones win, and with deep nested objects merge too."""
    merged: Dict[str, Any] = {}
    for item in dicts:
        if not isinstance(item, dict):
            raise TypeError("dicts must hold objects only, not %s" % type(item).__name__)
        merged = _merge(merged, item, deep)
    return merged


def flatten_list(items: List[Any], depth: Optional[int] = None) -> List[Any]:
    """Nested lists flattened into one list, completely or to the given depth."""
    if depth is not None:
        depth = _integer("depth", depth, 0, 100)
    flat: List[Any] = []
    todo = [(iter(items), depth)]
    while todo:
        entries, level = todo[-1]
        for entry in entries:
            if isinstance(entry, list) and (level is None or level > 0):
                todo.append((iter(entry), None if level is None else level - 1))
                break
            flat.append(entry)
        else:
            todo.pop()
    return flat


def unique_values(items: List[Any]) -> List[Any]:
    """The distinct values of a list, in the order first seen (1, 1.0 and true are distinct)."""
    seen = set()
    unique = []
    for item in items:
        identity = _json_text(item)
        if identity not in seen:
            seen.add(identity)
            unique.append(item)
    return unique


def chunk_list(items: List[Any], size: int) -> List[List[Any]]:
    """A list cut into consecutive chunks of size items (the last may be shorter)."""
    size = _integer("size", size, 1, 100_000)
    return [items[start : start + size] for start in range(0, len(items), size)]


def pluck(records: List[Dict[str, Any]], field: str, skip_missing: bool = False) -> List[Any]:
    """The value of one field from each record, in order; null for records without it.

    With skip_missing, records without the field (or with null) are left out instead.
    """
    values = [record.get(field) for record in records]
    if skip_missing:
        return [value for value in values if value is not None]
    return values


# ---------------------------------------------------------------------------------------
# time (pure: dates are given, never read from a clock)
# ---------------------------------------------------------------------------------------

_ISO_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"([Zz]|[+-]\d{2}(?::?\d{2})?)?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)
_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


def _parse_iso(text: str) -> datetime:
    """An ISO 8601 date or date-time (YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|+HH:MM])."""
    match = _ISO_DATE.fullmatch(text.strip())
    if not match:
        raise ValueError(
            "not an ISO 8601 date: %r (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])" % text
        )
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone = None
    if offset is not None:
        if offset in ("Z", "z"):
            zone = timezone.utc
        else:
            digits = offset[1:].replace(":", "")
            delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
            if delta >= timedelta(hours=24) or int(digits[2:] or 0) >= 60:
                raise ValueError("invalid UTC offset in %r" % text)
            zone = timezone(-delta if offset[0] == "-" else delta)
    try:
        return datetime(
            int(year), int(month), int(day),
            int(hour or 0), int(minute or 0), int(second or 0),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=zone,
        )
    except ValueError as error:
        raise ValueError("invalid date %r: %s" % (text, error)) from None


def _as_utc(moment: datetime) -> datetime:
    """Aware moments as they are; a moment without UTC offset is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _offset_text(moment: datetime, colon: bool = True) -> str:
    offset = moment.utcoffset()
    if offset is None:
        return ""
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return "%s%02d%s%02d" % (sign, minutes // 60, ":" if colon else "", minutes % 60)


def _whole(number: float) -> Union[int, float]:
    return int(number) if float(number).is_integer() else number


def parse_date(date: str) -> Dict[str, Any]:
    """The parts of an ISO 8601 date or date-time: year, month, day, time, weekday, week and more.

    `timestamp` is seconds since 1970-01-01T00:00:00Z; a date without UTC offset counts as UTC
    (and its `utc_offset` is null).
    """
    moment = _parse_iso(date)
    iso_year, iso_week, iso_weekday = moment.isocalendar()
    since_epoch = _as_utc(moment) - _EPOCH
    seconds = since_epoch.days * 86400 + since_epoch.seconds
    return {
        "iso": moment.isoformat(),
        "date": moment.date().isoformat(),
        "time": moment.time().isoformat(),
        "year": moment.year,
        "month": moment.month,
        "day": moment.day,
        "hour": moment.hour,
        "minute": moment.minute,
        "second": moment.second,
        "microsecond": moment.microsecond,
        "weekday": _WEEKDAYS[iso_weekday - 1],
        "weekday_number": iso_weekday,
        "day_of_year": moment.timetuple().tm_yday,
        "iso_year": iso_year,
        "iso_week": iso_week,
        "utc_offset": _offset_text(moment) or None,
        "timestamp": _whole(seconds + since_epoch.microseconds / 1_000_000),
    }


def _hour12(moment: datetime) -> int:
    return moment.hour % 12 or 12


_DIRECTIVES = {
    "Y": lambda m: "%04d" % m.year,
    "y": lambda m: "%02d" % (m.year % 100),
    "m": lambda m: "%02d" % m.month,
    "d": lambda m: "%02d" % m.day,
    "e": lambda m: "%2d" % m.day,
    "H": lambda m: "%02d" % m.hour,
    "I": lambda m: "%02d" % _hour12(m),
    "M": lambda m: "%02d" % m.minute,
    "S": lambda m: "%02d" % m.second,
    "f": lambda m: "%06d" % m.microsecond,
    "p": lambda m: "AM" if m.hour < 12 else "PM",
    "j": lambda m: "%03d" % m.timetuple().tm_yday,
    "A": lambda m: _WEEKDAYS[m.weekday()],
    "a": lambda m: _WEEKDAYS[m.weekday()][:3],
    "B": lambda m: _MONTHS[m.month - 1],
    "b": lambda m: _MONTHS[m.month - 1][:3],
    "u": lambda m: "%d" % m.isoweekday(),
    "w": lambda m: "%d" % (m.isoweekday() % 7),
    "G": lambda m: "%04d" % m.isocalendar()[0],
    "V": lambda m: "%02d" % m.isocalendar()[1],
    "z": lambda m: _offset_text(m, colon=False),
    "F": lambda m: "%04d-%02d-%02d" % (m.year, m.month, m.day),
    "T": lambda m: "%02d:%02d:%02d" % (m.hour, m.minute, m.second),
    "%": lambda m: "%",
}
_DIRECTIVE = re.compile(r"%(.?)", re.DOTALL)


def format_date(date: str, format: str = "%Y-%m-%d") -> str:
    """An ISO 8601 date or date-time written in a strftime-like format, in English.

    Directives: %Y %y %m %d %e %H %I %M %S %f %p %j %A %a %B %b %u %w %G %V %z %F %T %%;
    any other is an error.
    """
    moment = _parse_iso(date)

    def expand(match: "re.Match") -> str:
        directive = _DIRECTIVES.get(match.group(1))
        if directive is None:
            raise ValueError("unsupported directive %r in format %r" % (match.group(0), format))
        return directive(moment)

    return _DIRECTIVE.sub(expand, format)


def date_difference(start: str, end: str, unit: str = "days") -> Union[int, float]:
    """Time from start to end in seconds, minutes, hours, days or weeks.

    Negative when end is earlier. Dates without UTC offset count as UTC. Whole results are
    integers.
    """
    if unit not in _UNIT_SECONDS:
        raise ValueError("unknown unit %r; one of %s" % (unit, ", ".join(_UNIT_SECONDS)))
    delta = _as_utc(_parse_iso(end)) - _as_utc(_parse_iso(start))
    microseconds = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    per_unit = _UNIT_SECONDS[unit] * 1_000_000
    if microseconds % per_unit == 0:
        return microseconds // per_unit
    return microseconds / per_unit


# ---------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------

# The public built-ins, by name: the only functions _gz_call reaches.
_BUILTINS = {
    function.__name__: function
    for function in (
        fibonacci, factorial, is_prime, prime_factors, primes_up_to, gcd, analyze_numbers,
        count_words, extract_keywords, text_stats, word_frequency, uppercase, lowercase,
        reverse_text, slugify, find_pattern, summarize_text,
        csv_parse, csv_filter, json_to_csv, json_query, validate_json, sort_records, group_by,
        merge_dicts, flatten_list, unique_values, chunk_list, pluck,
        parse_date, format_date, date_difference,
    )
}


def _gz_call(context):
    """Entry point used by the provider: context = {"function_name", "args", "kwargs"}."""
    if not isinstance(context, dict):
        raise TypeError("context must be an object, not %s" % type(context).__name__)
    name = context.get("function_name")
    function = _BUILTINS.get(name) if isinstance(name, str) and not name.startswith("_") else None
    if function is None:
        raise LookupError("unknown built-in function: %s" % name)
    args = context.get("args")
    kwargs = context.get("kwargs")
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list):
        raise TypeError("args must be a list, not %s" % type(args).__name__)
    if not isinstance(kwargs, dict):
        raise TypeError("kwargs must be an object, not %s" % type(kwargs).__name__)
    return function(*args, **kwargs)
