//! Result substitution: `${task.path}` (and the older `{{Task Name.result}}`) in parameters.
//!
//! A reference names a task by id or name and walks that task's result object:
//! `${fetch.result.items[0]}`, `${fetch.result.items.0}`. `${t}` alone means `${t.result}`.
//! A string that is exactly one reference takes the referenced value with its JSON type;
//! a reference embedded in a longer string is rendered as text (strings as they are,
//! anything else as compact JSON). Write `$${` for a literal `${`.
//!
//! **The `result` segment.** Python tasks return `{result, output, success, execution_time}`,
//! so `${t.result}` is the script's `result`. LLM tasks return `{response, ...}` with no
//! `result` field; for them (and for providers that return a bare value) a leading `result`
//! segment means the task's primary value: `response` if present, else the whole result.
//! That keeps `{{Summarize.result}}` from the old dialect working for LLM tasks.
//!
//! **The old dialect.** `{{Task Name.path}}` is a reference when its inside has a `.`
//! (the old files always wrote `.result`) and no braces; `{{x}}` without a dot is left as
//! text, so Python format strings such as `"{{x}}"` pass through untouched.
//!
//! Unlike the original, a reference that cannot be resolved is an error, never left as is.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codes;

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathSeg {
    /// `.name`; a key made of digits also indexes a list (`items.0`).
    Key(String),
    /// `[3]`; on an object it looks up the key `"3"`.
    Index(usize),
}

impl PathSeg {
    fn write_to(&self, out: &mut String, first: bool) {
        match self {
            PathSeg::Key(key) => {
                if !first {
                    out.push('.');
                }
                out.push_str(key);
            }
            PathSeg::Index(index) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
}

/// A well-formed reference found in parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// The task id or name the reference starts from.
    pub task: String,
    /// The path into that task's result; empty for `${t}`.
    pub path: Vec<PathSeg>,
    /// The reference as written, e.g. `${fetch.result.items[0]}`.
    pub raw: String,
    /// JSON pointer (RFC 6901) of the string that holds the reference within the parameters.
    pub pointer: String,
}

/// Why a reference could not be substituted. Its code is [`codes::SUBSTITUTION_FAILED`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstitutionError {
    #[error("cannot resolve {reference}: no finished task with id or name `{task}`")]
    UnknownTask { reference: String, task: String },
    #[error("cannot resolve {reference}: {reason}")]
    Unresolvable { reference: String, reason: String },
    #[error("malformed reference {reference}: {reason}")]
    Malformed { reference: String, reason: String },
}

impl SubstitutionError {
    /// Always [`codes::SUBSTITUTION_FAILED`] (`GZ3013`).
    pub fn code(&self) -> &'static str {
        codes::SUBSTITUTION_FAILED
    }

    /// The reference as written.
    pub fn reference(&self) -> &str {
        match self {
            SubstitutionError::UnknownTask { reference, .. }
            | SubstitutionError::Unresolvable { reference, .. }
            | SubstitutionError::Malformed { reference, .. } => reference,
        }
    }
}

/// A parsed reference before it is tied to a place in the parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParsedRef {
    pub task: String,
    pub path: Vec<PathSeg>,
}

/// A piece of a string: literal text or a reference (possibly malformed).
#[derive(Debug)]
enum Piece<'a> {
    Text(&'a str),
    Ref {
        raw: &'a str,
        parsed: Result<ParsedRef, String>,
    },
}

/// Whether a string may hold a reference; the cheap test that guards everything else.
fn has_marker(s: &str) -> bool {
    s.contains("${") || s.contains("{{")
}

/// Whether any string in `params` may hold a reference. Allocates nothing.
pub fn needs_substitution(params: &Value) -> bool {
    match params {
        Value::String(s) => has_marker(s),
        Value::Array(items) => items.iter().any(needs_substitution),
        Value::Object(map) => map.values().any(needs_substitution),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Splits a string into text and references.
fn scan(s: &str) -> Vec<Piece<'_>> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &s[i..];
        if rest.starts_with("$${") {
            // Escaped: keep text up to here, drop one `$`, and skip past the `${`.
            pieces.push(Piece::Text(&s[text_start..i]));
            text_start = i + 1;
            i += 3;
        } else if rest.starts_with("${") {
            let Some(close) = rest.find('}') else { break };
            pieces.push(Piece::Text(&s[text_start..i]));
            pieces.push(Piece::Ref {
                raw: &rest[..=close],
                parsed: parse_dollar(&rest[2..close]),
            });
            i += close + 1;
            text_start = i;
        } else if let Some(after) = rest.strip_prefix("{{") {
            match after.find("}}").map(|c| (c, &after[..c])) {
                Some((close, inner)) if is_braces_reference(inner) => {
                    pieces.push(Piece::Text(&s[text_start..i]));
                    pieces.push(Piece::Ref {
                        raw: &rest[..close + 4],
                        parsed: parse_braces(inner),
                    });
                    i += close + 4;
                    text_start = i;
                }
                _ => i += 2,
            }
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    pieces.push(Piece::Text(&s[text_start..]));
    pieces.retain(|p| !matches!(p, Piece::Text("")));
    pieces
}

fn is_braces_reference(inner: &str) -> bool {
    inner.contains('.') && !inner.contains('{') && !inner.contains('}')
}

/// `${task.a.b[0]}`: the task part ends at the first `.` or `[`.
fn parse_dollar(inner: &str) -> Result<ParsedRef, String> {
    let inner = inner.trim();
    let end = inner.find(['.', '[']).unwrap_or(inner.len());
    parse_with_task(&inner[..end], &inner[end..])
}

/// `{{Task Name.result}}`: the task part ends at the first `.`.
fn parse_braces(inner: &str) -> Result<ParsedRef, String> {
    let inner = inner.trim();
    let end = inner.find('.').unwrap_or(inner.len());
    parse_with_task(&inner[..end], &inner[end..])
}

fn parse_with_task(task: &str, path: &str) -> Result<ParsedRef, String> {
    let task = task.trim();
    if task.is_empty() {
        return Err("it names no task".to_string());
    }
    Ok(ParsedRef {
        task: task.to_string(),
        path: parse_path(path)?,
    })
}

/// Parses `.a.b[0].c` (possibly empty) into segments.
fn parse_path(mut rest: &str) -> Result<Vec<PathSeg>, String> {
    let mut path = Vec::new();
    while !rest.is_empty() {
        if let Some(after_dot) = rest.strip_prefix('.') {
            let end = after_dot.find(['.', '[']).unwrap_or(after_dot.len());
            let key = after_dot[..end].trim();
            if key.is_empty() {
                return Err("it has an empty path segment".to_string());
            }
            path.push(PathSeg::Key(key.to_string()));
            rest = &after_dot[end..];
        } else if let Some(after_bracket) = rest.strip_prefix('[') {
            let Some(close) = after_bracket.find(']') else {
                return Err("a `[` is not closed".to_string());
            };
            let index = after_bracket[..close].trim();
            let index = index
                .parse::<usize>()
                .map_err(|_| format!("`[{index}]` is not a list index"))?;
            path.push(PathSeg::Index(index));
            rest = &after_bracket[close + 1..];
        } else {
            return Err(format!("unexpected `{rest}` after a path segment"));
        }
    }
    Ok(path)
}

/// Calls `found(pointer, raw, parsed, exact)` for every reference in `params`, including
/// malformed ones; `exact` is true when the reference is the whole string.
pub(crate) fn for_each_reference<F>(params: &Value, found: &mut F)
where
    F: FnMut(&str, &str, &Result<ParsedRef, String>, bool),
{
    let mut pointer = String::new();
    visit(params, &mut pointer, found);
}

fn visit<F>(value: &Value, pointer: &mut String, found: &mut F)
where
    F: FnMut(&str, &str, &Result<ParsedRef, String>, bool),
{
    match value {
        Value::String(s) if has_marker(s) => {
            let pieces = scan(s);
            let exact = pieces.len() == 1;
            for piece in &pieces {
                if let Piece::Ref { raw, parsed } = piece {
                    found(pointer, raw, parsed, exact);
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = pointer.len();
                let _ = write!(pointer, "/{index}");
                visit(item, pointer, found);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = pointer.len();
                pointer.push('/');
                push_pointer_token(pointer, key);
                visit(item, pointer, found);
                pointer.truncate(len);
            }
        }
        Value::String(_) | Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn push_pointer_token(pointer: &mut String, key: &str) {
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// Every well-formed reference in `params`, in document order (to compute implicit
/// dependencies). Malformed ones are left to validation and [`substitute`] to report.
pub fn references(params: &Value) -> Vec<Reference> {
    let mut out = Vec::new();
    for_each_reference(params, &mut |pointer, raw, parsed, _exact| {
        if let Ok(parsed) = parsed {
            out.push(Reference {
                task: parsed.task.clone(),
                path: parsed.path.clone(),
                raw: raw.to_string(),
                pointer: pointer.to_string(),
            });
        }
    });
    out
}

/// Replaces every reference in `params` by the value it names.
///
/// `lookup` maps a task id or name to that task's full result object. Parameters without
/// any `${` or `{{` are cloned without further work.
///
/// # Errors
///
/// The first reference that is malformed, names an unknown task, or whose path does not
/// exist in the result.
pub fn substitute<'v>(
    params: &Value,
    lookup: &dyn Fn(&str) -> Option<&'v Value>,
) -> Result<Value, SubstitutionError> {
    if !needs_substitution(params) {
        return Ok(params.clone());
    }
    substitute_value(params, &|key| lookup(key).map(Found::Result))
}

/// [`substitute`] for one task of a fan-out (`batch: {from: …}` on a task): `${item}` (and
/// `${item.a[0]}`) is `item` and `${item_index}` is `index`, walked as plain JSON (no
/// `result` rule); every other reference goes to `lookup`. One pass, so text inside an
/// item is never read as a reference.
///
/// # Errors
///
/// As [`substitute`].
pub fn substitute_item<'v>(
    params: &Value,
    lookup: &dyn Fn(&str) -> Option<&'v Value>,
    item: &Value,
    index: usize,
) -> Result<Value, SubstitutionError> {
    if !needs_substitution(params) {
        return Ok(params.clone());
    }
    let index = Value::from(index);
    substitute_value(params, &|key| match key {
        ITEM => Some(Found::Plain(item)),
        ITEM_INDEX => Some(Found::Plain(&index)),
        _ => lookup(key).map(Found::Result),
    })
}

/// The name of the current item in a fan-out task's parameters (`${item}`).
pub const ITEM: &str = "item";
/// The name of the current item's position (from 0) in a fan-out task's parameters.
pub const ITEM_INDEX: &str = "item_index";

/// What a reference's first word names: a task's result object (the `result` rule
/// applies) or a plain value (a fan-out's item).
#[derive(Clone, Copy)]
enum Found<'v> {
    Result(&'v Value),
    Plain(&'v Value),
}

type Lookup<'l, 'v> = &'l dyn Fn(&str) -> Option<Found<'v>>;

fn substitute_value<'v>(value: &Value, lookup: Lookup<'_, 'v>) -> Result<Value, SubstitutionError> {
    match value {
        Value::String(s) if has_marker(s) => substitute_string(s, lookup),
        Value::Array(items) => items
            .iter()
            .map(|item| substitute_value(item, lookup))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), substitute_value(v, lookup)?)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

fn substitute_string<'v>(s: &str, lookup: Lookup<'_, 'v>) -> Result<Value, SubstitutionError> {
    let pieces = scan(s);
    if let [Piece::Ref { raw, parsed }] = pieces.as_slice() {
        return resolve_piece(raw, parsed, lookup).cloned();
    }
    let mut out = String::with_capacity(s.len());
    for piece in &pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Ref { raw, parsed } => {
                render_into(&mut out, resolve_piece(raw, parsed, lookup)?);
            }
        }
    }
    Ok(Value::String(out))
}

fn resolve_piece<'v>(
    raw: &str,
    parsed: &Result<ParsedRef, String>,
    lookup: Lookup<'_, 'v>,
) -> Result<&'v Value, SubstitutionError> {
    let parsed = parsed
        .as_ref()
        .map_err(|reason| SubstitutionError::Malformed {
            reference: raw.to_string(),
            reason: reason.clone(),
        })?;
    let result = lookup(&parsed.task).ok_or_else(|| SubstitutionError::UnknownTask {
        reference: raw.to_string(),
        task: parsed.task.clone(),
    })?;
    let resolved = match result {
        Found::Result(result) => resolve_path(result, &parsed.path),
        Found::Plain(value) => walk(value, &parsed.path, String::new()),
    };
    resolved.map_err(|reason| SubstitutionError::Unresolvable {
        reference: raw.to_string(),
        reason,
    })
}

/// Walks `path` into a task's result object (see the module docs for `result`).
pub fn resolve_path<'v>(result: &'v Value, path: &[PathSeg]) -> Result<&'v Value, String> {
    let (current, rest, walked) = match path.split_first() {
        None => (primary_value(result), path, String::from("result")),
        Some((PathSeg::Key(key), rest)) if key == "result" => {
            (primary_value(result), rest, String::from("result"))
        }
        Some(_) => (result, path, String::new()),
    };
    walk(current, rest, walked)
}

/// Walks `rest` from `current` (`walked`: the path so far, for messages).
fn walk<'v>(
    mut current: &'v Value,
    rest: &[PathSeg],
    mut walked: String,
) -> Result<&'v Value, String> {
    for segment in rest {
        let next = match (segment, current) {
            (PathSeg::Key(key), Value::Object(map)) => map.get(key.as_str()),
            (PathSeg::Index(index), Value::Object(map)) => map.get(index.to_string().as_str()),
            (PathSeg::Index(index), Value::Array(items)) => items.get(*index),
            (PathSeg::Key(key), Value::Array(items)) => match key.parse::<usize>() {
                Ok(index) => items.get(index),
                Err(_) => {
                    return Err(format!(
                        "{} is a list; `{key}` is not an index",
                        describe(&walked)
                    ))
                }
            },
            (_, other) => {
                return Err(format!(
                    "{} is {}, not an object or a list",
                    describe(&walked),
                    json_kind(other)
                ))
            }
        };
        match (next, current) {
            (Some(next), _) => current = next,
            (None, Value::Array(items)) => {
                let wanted = match segment {
                    PathSeg::Index(index) => index.to_string(),
                    PathSeg::Key(key) => key.clone(),
                };
                return Err(format!(
                    "index {wanted} is out of range: {} has {} items",
                    describe(&walked),
                    items.len()
                ));
            }
            (None, _) => {
                let first = walked.is_empty();
                segment.write_to(&mut walked, first);
                return Err(format!("the task's result has no field `{walked}`"));
            }
        }
        let first = walked.is_empty();
        segment.write_to(&mut walked, first);
    }
    Ok(current)
}

fn describe(walked: &str) -> String {
    if walked.is_empty() {
        "the task's result".to_string()
    } else {
        format!("`{walked}`")
    }
}

/// A task's primary value: its `result` field, else its `response` field, else all of it.
fn primary_value(result: &Value) -> &Value {
    match result {
        Value::Object(map) => map
            .get("result")
            .or_else(|| map.get("response"))
            .unwrap_or(result),
        other => other,
    }
}

/// How a value is named in messages: `a list`, `a number`, `null`, ….
pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Text form of an embedded value: strings raw, everything else as compact JSON.
fn render_into(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(s: &str) -> Vec<String> {
        scan(s)
            .iter()
            .map(|p| match p {
                Piece::Text(t) => format!("T({t})"),
                Piece::Ref { raw, parsed: Ok(r) } => format!("R({raw}|{}|{:?})", r.task, r.path),
                Piece::Ref {
                    raw,
                    parsed: Err(e),
                } => format!("E({raw}|{e})"),
            })
            .collect()
    }

    #[test]
    fn scanner_finds_both_dialects() {
        assert_eq!(
            parsed("a ${t.x[1].y} b {{Task One.result}}"),
            vec![
                "T(a )",
                "R(${t.x[1].y}|t|[Key(\"x\"), Index(1), Key(\"y\")])",
                "T( b )",
                "R({{Task One.result}}|Task One|[Key(\"result\")])",
            ]
        );
    }

    #[test]
    fn scanner_leaves_non_references_alone() {
        assert_eq!(
            parsed("f\"{{x}}\" and ${ unterminated"),
            vec!["T(f\"{{x}}\" and ${ unterminated)"]
        );
        assert_eq!(parsed("cost: $${price}"), vec!["T(cost: )", "T(${price})"]);
        assert_eq!(parsed("ünï ${t}"), vec!["T(ünï )", "R(${t}|t|[])"]);
    }

    #[test]
    fn malformed_references_are_reported() {
        assert_eq!(parsed("${.x}"), vec!["E(${.x}|it names no task)"]);
        assert_eq!(
            parsed("${a..b}"),
            vec!["E(${a..b}|it has an empty path segment)"]
        );
        assert_eq!(
            parsed("${a[x]}"),
            vec!["E(${a[x]}|`[x]` is not a list index)"]
        );
    }

    #[test]
    fn result_segment_falls_back_to_the_primary_value() {
        let llm = json!({"response": "hi", "model": "m"});
        assert_eq!(resolve_path(&llm, &[]), Ok(&json!("hi")));
        let bare = json!(42);
        assert_eq!(
            resolve_path(&bare, &[PathSeg::Key("result".into())]),
            Ok(&json!(42))
        );
        let py = json!({"result": {"n": 1}, "output": ""});
        assert_eq!(
            resolve_path(
                &py,
                &[PathSeg::Key("result".into()), PathSeg::Key("n".into())]
            ),
            Ok(&json!(1))
        );
    }

    #[test]
    fn pointers_escape_keys() {
        let refs = references(&json!({"a/b": {"c~d": ["x", "${t.y}"]}}));
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].pointer, "/a~1b/c~0d/1");
    }
}
