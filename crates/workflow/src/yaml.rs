//! A YAML document tree that remembers where every node came from.
//!
//! `serde-saphyr` parses the text; each node is captured with [`serde_saphyr::Spanned`] so
//! that later checks (unknown keys, wrong types, schema violations deep inside parameters)
//! can point at a line and column instead of at "somewhere in the file". A plain document
//! (no anchors, aliases, tags or merge keys: nearly every workflow) is built by [`plain`]
//! straight from the parser's events into the same tree, in a third of the time.

mod plain;

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, Location, Spanned};

/// A 1-based line and column in the YAML source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_location(location: Location) -> Option<Pos> {
        let (line, column) = (location.line(), location.column());
        (line > 0).then(|| Pos {
            line: usize::try_from(line).unwrap_or(usize::MAX),
            column: usize::try_from(column).unwrap_or(usize::MAX),
        })
    }
}

/// One YAML node and its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub pos: Option<Pos>,
    pub value: NodeValue,
}

/// The value of a YAML node after scalar resolution (YAML 1.2 core schema).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax (or structure) error, with its position when known.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub message: String,
    pub pos: Option<Pos>,
}

/// Parser events a document may make (raised above `serde-saphyr`'s default so that
/// workflows of 100,000 tasks load).
const MAX_EVENTS: usize = 100_000_000;
/// Nodes a document may hold.
const MAX_NODES: usize = 50_000_000;
/// How deep collections may nest, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Parses one YAML document into a positioned tree: plain documents by [`plain::read`],
/// the rest (and every error) by `serde-saphyr`.
///
/// The parser's resource budget is raised above its defaults so that workflows of
/// 100,000 tasks load; nesting depth stays bounded so hostile input cannot exhaust the stack.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(Node {
            pos: Some(Pos { line: 1, column: 1 }),
            value: NodeValue::Null,
        });
    }
    let budget = budget();
    match plain::read(text, &budget) {
        Some(node) => Ok(node),
        None => parse_with_saphyr(text, budget),
    }
}

/// `serde-saphyr`'s budget with the limits above.
fn budget() -> Budget {
    let mut budget = Budget::default();
    budget.max_events = MAX_EVENTS;
    budget.max_nodes = MAX_NODES;
    budget.max_depth = MAX_DEPTH;
    budget
}

/// Reads any YAML document through `serde-saphyr`: anchors, aliases, tags, merge keys, and
/// the errors with their positions.
fn parse_with_saphyr(text: &str, budget: Budget) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        budget: Some(budget),
        with_snippet: false,
        // YAML 1.2: only true/false are booleans, so `file: y` stays the string "y".
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|err| SyntaxError {
        pos: err.location().and_then(Pos::from_location),
        message: plain_message(&err.to_string()),
    })
}

/// The rendered error's first sentence, without the trailing location (diagnostics carry
/// it separately) or advice meant for developers using the parser.
fn plain_message(rendered: &str) -> String {
    let mut message = rendered.lines().next().unwrap_or(rendered).trim();
    if let Some(at) = message.rfind(" at line ") {
        message = &message[..at];
    }
    if let Some(advice) = message.find(", set DuplicateKeyPolicy") {
        message = &message[..advice];
    }
    message.to_string()
}

impl Node {
    /// A short name of the node's YAML type, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) | NodeValue::UInt(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar key or value (strings as is, numbers and booleans printed).
    pub fn scalar_text(&self) -> Option<String> {
        self.value.scalar_text().map(std::borrow::Cow::into_owned)
    }

    /// Follows an RFC 6901 JSON pointer into this node, as far as it goes.
    ///
    /// Returns the deepest node reached, so a pointer to a missing property still lands on
    /// its parent mapping (the best place to report "missing" or "not allowed").
    pub fn walk_pointer(&self, pointer: &str) -> &Node {
        let mut node = self;
        if pointer.is_empty() {
            return node;
        }
        for raw in pointer.trim_start_matches('/').split('/') {
            let segment = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.value {
                NodeValue::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.scalar_text().as_deref() == Some(segment.as_str()))
                    .map(|(_, v)| v),
                NodeValue::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }
}

impl NodeValue {
    /// The text of a scalar (strings borrowed, numbers and booleans printed).
    pub fn scalar_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        match self {
            NodeValue::Str(s) => Some(Cow::Borrowed(s)),
            NodeValue::Int(i) => Some(Cow::Owned(i.to_string())),
            NodeValue::UInt(u) => Some(Cow::Owned(u.to_string())),
            NodeValue::Float(f) => Some(Cow::Owned(f.to_string())),
            NodeValue::Bool(b) => Some(Cow::Owned(b.to_string())),
            NodeValue::Null | NodeValue::Seq(_) | NodeValue::Map(_) => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        Ok(Node {
            pos: Pos::from_location(spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(i64::try_from(v).map_or(NodeValue::UInt(v), NodeValue::Int))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeValue, E> {
        i64::try_from(v)
            .map(NodeValue::Int)
            .or_else(|_| u64::try_from(v).map(NodeValue::UInt))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        u64::try_from(v)
            .map(|u| i64::try_from(u).map_or(NodeValue::UInt(u), NodeValue::Int))
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeValue, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn map_entries(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            NodeValue::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nodes_carry_positions() {
        let node = parse("name: x\ntasks:\n  - id: a\n    n: 5\n").unwrap();
        let entries = map_entries(&node);
        assert_eq!(entries[0].0.pos, Some(Pos { line: 1, column: 1 }));
        assert_eq!(entries[0].1.pos, Some(Pos { line: 1, column: 7 }));
        let NodeValue::Seq(tasks) = &entries[1].1.value else {
            panic!("tasks not a list")
        };
        let task = map_entries(&tasks[0]);
        assert_eq!(task[1].0.pos, Some(Pos { line: 4, column: 5 }));
        assert_eq!(task[1].1.value, NodeValue::Int(5));
        assert_eq!(task[1].1.pos, Some(Pos { line: 4, column: 8 }));
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("name: x\ntasks:\n  - id: [a\n").unwrap_err();
        assert!(err.pos.is_some());
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse("name: x\nname: y\n").unwrap_err();
        assert_eq!(err.pos.map(|p| p.line), Some(2));
        assert_eq!(err.message, "duplicate mapping key: name");
    }

    #[test]
    fn only_true_and_false_are_booleans() {
        let node = parse("a: y\nb: no\nc: true\n").unwrap();
        let values: Vec<NodeValue> = map_entries(&node)
            .iter()
            .map(|(_, v)| v.value.clone())
            .collect();
        assert_eq!(
            values,
            vec![
                NodeValue::Str("y".into()),
                NodeValue::Str("no".into()),
                NodeValue::Bool(true)
            ]
        );
    }

    #[test]
    fn pointer_walks_into_lists_and_maps() {
        let node = parse("a:\n  b:\n    - 1\n    - x: 2\n").unwrap();
        let found = node.walk_pointer("/a/b/1/x");
        assert_eq!(found.value, NodeValue::Int(2));
        assert_eq!(
            found.pos,
            Some(Pos {
                line: 4,
                column: 10
            })
        );
        assert_eq!(
            node.walk_pointer("/a/zz").pos,
            Some(Pos { line: 2, column: 3 })
        );
    }
}
