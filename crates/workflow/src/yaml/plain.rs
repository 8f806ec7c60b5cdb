//! The common case read fast: a document of mappings, lists and scalars with no anchors,
//! aliases, tags, merge keys or duplicate keys is built into a positioned tree straight from
//! the YAML parser's events.
//!
//! `serde-saphyr` reads such a file through serde, one `Spanned` wrapper per node, which
//! cost three times the parser's own work (a 10,000-task workflow: ~45 ms of events,
//! ~135 ms to the tree). The tree built here is the one `serde-saphyr` builds, node for
//! node and position for position (the tests compare the two); anything this reader does
//! not resolve exactly as `serde-saphyr` does — an anchor, an alias, a tag, a merge key, a
//! key given twice, a number that is not a plain integer or decimal, a second document, a
//! syntax error, a budget exceeded — makes it give up, and the document is read again by
//! `serde-saphyr`, whose tree and errors are then the answer.

use std::borrow::Cow;

use granit_parser::{Event, Parser, ScalarStyle, Span};
use serde_saphyr::Budget;

use super::{Node, NodeValue, Pos};

/// A collection being read.
enum Frame {
    Seq(Option<Pos>, Vec<Node>),
    /// A mapping, its entries so far and the key waiting for its value.
    Map(Option<Pos>, Vec<(Node, Node)>, Option<Node>),
}

/// Reads `text` if it is plain enough (see the module header); `None` leaves it to
/// `serde-saphyr`.
pub(super) fn read(text: &str, limits: &Budget) -> Option<Node> {
    let mut options = granit_parser::Options::default();
    options.simple_key_max_lookahead = limits.simple_key_max_lookahead;
    options.flow_nesting_limit = limits.flow_nesting_limit;
    options.block_nesting_limit = options
        .block_nesting_limit
        .max(limits.max_depth.saturating_add(1));
    let mut reader = Reader {
        stack: Vec::new(),
        root: None,
        nodes: 0,
        scalar_bytes: 0,
        limits,
    };
    let mut documents = 0usize;
    for (events, item) in Parser::new_from_str_with_options(text, options).enumerate() {
        if events >= limits.max_events {
            return None;
        }
        let (event, span) = item.ok()?;
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_, version) => {
                documents += 1;
                if documents > 1 || version.is_some() {
                    return None;
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                reader.scalar_bytes = reader.scalar_bytes.saturating_add(value.len());
                let value = resolve(value, style)?;
                reader.add(Node {
                    pos: pos(&span),
                    value,
                })?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                reader.open(anchor, tag.is_some())?;
                reader.stack.push(Frame::Seq(pos(&span), Vec::new()));
            }
            Event::MappingStart(_, anchor, tag) => {
                reader.open(anchor, tag.is_some())?;
                reader.stack.push(Frame::Map(pos(&span), Vec::new(), None));
            }
            Event::SequenceEnd => {
                let Some(Frame::Seq(at, items)) = reader.stack.pop() else {
                    return None;
                };
                reader.add(Node {
                    pos: at,
                    value: NodeValue::Seq(items),
                })?;
            }
            Event::MappingEnd => {
                let Some(Frame::Map(at, entries, None)) = reader.stack.pop() else {
                    return None;
                };
                if has_duplicate_key(&entries) {
                    return None;
                }
                reader.add(Node {
                    pos: at,
                    value: NodeValue::Map(entries),
                })?;
            }
            // Aliases, and anything else the parser may report: `serde-saphyr` reads it.
            _ => return None,
        }
    }
    if !reader.stack.is_empty() {
        return None;
    }
    reader.root
}

struct Reader<'l> {
    stack: Vec<Frame>,
    root: Option<Node>,
    nodes: usize,
    scalar_bytes: usize,
    limits: &'l Budget,
}

impl Reader<'_> {
    /// A collection starts: no anchor, no tag, within the depth limit.
    fn open(&mut self, anchor: usize, tagged: bool) -> Option<()> {
        (anchor == 0 && !tagged && self.stack.len() < self.limits.max_depth).then_some(())
    }

    /// A finished node goes into the collection being read, or becomes the document.
    fn add(&mut self, node: Node) -> Option<()> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes
            || self.scalar_bytes > self.limits.max_total_scalar_bytes
        {
            return None;
        }
        match self.stack.last_mut() {
            None if self.root.is_none() => self.root = Some(node),
            None => return None,
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    // Keys are scalars, and `<<` is a merge key: both left to serde-saphyr.
                    let scalar = !matches!(node.value, NodeValue::Seq(_) | NodeValue::Map(_));
                    let merge = matches!(&node.value, NodeValue::Str(s) if s == "<<");
                    if !scalar || merge {
                        return None;
                    }
                    *pending = Some(node);
                }
            },
        }
        Some(())
    }
}

/// The position `serde-saphyr` gives a node: its first character, 1-based.
fn pos(span: &Span) -> Option<Pos> {
    let line = span.start.line();
    (line > 0).then(|| Pos {
        line,
        column: span.start.col().saturating_add(1),
    })
}

/// A scalar's value under YAML 1.2's core schema with strict booleans, for the spellings
/// resolved here; `None` for a spelling left to `serde-saphyr` (numbers other than plain
/// integers and decimals, and anything that starts like one).
fn resolve(value: Cow<'_, str>, style: ScalarStyle) -> Option<NodeValue> {
    if style != ScalarStyle::Plain {
        return Some(NodeValue::Str(value.into_owned()));
    }
    match &*value {
        "" | "~" | "null" | "Null" | "NULL" => return Some(NodeValue::Null),
        "true" | "True" | "TRUE" => return Some(NodeValue::Bool(true)),
        "false" | "False" | "FALSE" => return Some(NodeValue::Bool(false)),
        _ => {}
    }
    let starts_like_a_number = value
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.'));
    if !starts_like_a_number {
        return Some(NodeValue::Str(value.into_owned()));
    }
    number(&value)
}

/// A plain integer (`-?(0|[1-9][0-9]*)`) or decimal (the same, `.`, digits); `None` for
/// any other spelling.
fn number(text: &str) -> Option<NodeValue> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let plain = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !plain(whole) || (whole.len() > 1 && whole.starts_with('0')) {
        return None;
    }
    match fraction {
        Some(f) if plain(f) => text.parse::<f64>().ok().map(NodeValue::Float),
        Some(_) => None,
        None if text.starts_with('-') => text.parse::<i64>().ok().map(NodeValue::Int),
        None => {
            let u = text.parse::<u64>().ok()?;
            Some(i64::try_from(u).map_or(NodeValue::UInt(u), NodeValue::Int))
        }
    }
}

/// True when two keys of a mapping read the same (`serde-saphyr` refuses duplicates, with
/// its own rule of sameness; any likeness at all is left to it). Most mappings have a few
/// keys, compared pairwise without allocating.
fn has_duplicate_key(entries: &[(Node, Node)]) -> bool {
    fn text((k, _): &(Node, Node)) -> Cow<'_, str> {
        k.value.scalar_text().unwrap_or_default()
    }
    if entries.len() <= 8 {
        return entries
            .iter()
            .enumerate()
            .any(|(i, a)| entries[i + 1..].iter().any(|b| text(a) == text(b)));
    }
    let mut keys: Vec<Cow<'_, str>> = entries.iter().map(text).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::{budget, parse_with_saphyr};
    use super::*;

    /// What this reader makes of `text` (None: left to serde-saphyr).
    fn fast(text: &str) -> Option<Node> {
        read(text, &budget())
    }

    /// Reads `text` with both readers: this one must read it, into serde-saphyr's tree.
    fn same(text: &str) {
        let full = parse_with_saphyr(text, budget()).expect("serde-saphyr reads it");
        let node = fast(text).unwrap_or_else(|| panic!("left to serde-saphyr:\n{text}"));
        assert_eq!(node, full, "{text}");
    }

    #[test]
    fn plain_documents_read_as_serde_saphyr_reads_them() {
        same(
            "name: w # a comment\n\
             description: >\n  folded\n  text\n\
             tasks:\n\
             \x20 - id: a\n    method: python/execute\n    parameters:\n      code: |\n        x = 1\n        result = x\n      n: 5\n      neg: -17\n      big: 18446744073709551615\n      t: 0.7\n      z: 0\n      q: -0.25\n\
             \x20 - {id: b, method: \"llm/chat\", dependencies: [a, 'a b'], priority: high}\n\
             \x20 -\n    id: c\n    empty:\n    nulls: [~, null, Null, NULL]\n    bools: [true, True, TRUE, false, False, FALSE, yes, no, on, off, y, n]\n    words: [python/execute, \"${a.result}\", '{{a}}', a b c, x-1, é ü]\n    long: this is a plain\n      scalar on two lines\n\
             \"quoted key\": 1\n\
             1: int key\n",
        );
        same("---\nname: w\ntasks: []\n...\n");
        same("- 1\n- - 2\n  - {}\n- []\n");
        same("just a string\n");
        same("key: |-\n  keep\n\n  lines\nother: >+\n  kept\n\n");
    }

    #[test]
    fn the_examples_and_shipped_files_read_as_serde_saphyr_reads_them() {
        let files = [
            include_str!("../../../../examples/hello.yaml"),
            include_str!("../../../../examples/failure.yaml"),
            include_str!("../../../../examples/fan_out_fan_in.yaml"),
            include_str!("../../../../examples/fan_out_over_results.yaml"),
            include_str!("../../../../examples/llm_chain.yaml"),
            include_str!("../../../../examples/llm_parallel_analysis.yaml"),
            include_str!("../../../../examples/llm_vision.yaml"),
            include_str!("../../../../examples/retry.yaml"),
            include_str!("../../../../examples/timeout.yaml"),
            include_str!("../../../../protocols/python.yaml"),
            include_str!("../../../../protocols/http.yaml"),
            include_str!("../../../../providers/ollama.yaml"),
        ];
        for text in files {
            same(text);
        }
    }

    #[test]
    fn what_is_not_plain_is_left_to_serde_saphyr() {
        for text in [
            "a: &x 1\nb: *x\n",
            "base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n",
            "a: !!str 5\n",
            "a: !custom x\n",
            "a: 1\na: 2\n",
            "a: 1\n\"a\": 2\n",
            "1: x\n\"1\": y\n",
            "a: 1\n---\nb: 2\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 0x1F\n",
            "a: 0o17\n",
            "a: 1e3\n",
            "a: 017\n",
            "a: 1_000\n",
            "a: +5\n",
            "a: .5\n",
            "a: .inf\n",
            "a: -.inf\n",
            "a: 2024-01-01\n",
            "a: 10:30\n",
            "a: 1.2.3\n",
            "a: 99999999999999999999\n",
            "a: -9999999999999999999\n",
            "? [a, b]\n: c\n",
            "a: [1, 2\n",
            "a: b: c\n",
        ] {
            assert!(fast(text).is_none(), "read here: {text}");
        }
    }

    #[test]
    fn a_scalar_read_here_reads_as_serde_saphyr_reads_it() {
        let tokens = [
            "0",
            "-0",
            "00",
            "7",
            "-7",
            "1.0",
            "1.50",
            "-1.5",
            "0.25",
            "1e5",
            "0.1e-5",
            "1_0",
            "0b101",
            "+1",
            "+.5",
            ".5",
            "1.",
            ".",
            "-",
            "--",
            "-x",
            "1-2",
            "0.0.0",
            "123abc",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "yes",
            "No",
            "on",
            "y",
            "~",
            "null",
            "Null",
            "NULL",
            "nUll",
            "true",
            "True",
            "TRUE",
            "tRue",
            "false",
            "FALSE",
            ".nan",
            ".inf",
            "Infinity",
            "nan",
            "inf",
            "0x",
            "0x1f",
            "12:30:00",
            "2024-01-01",
            "é",
            "a b",
            "'q'",
            "\"d\\n\"",
            "''",
            "\"\"",
            "x#y",
            "[]",
            "{}",
        ];
        let mut read_here = 0;
        for token in tokens {
            for text in [
                format!("k: {token}\n"),
                format!("- {token}\n"),
                format!("{token}: v\n"),
            ] {
                let Some(node) = fast(&text) else { continue };
                read_here += 1;
                let full = parse_with_saphyr(&text, budget()).expect("serde-saphyr reads it");
                assert_eq!(node, full, "{text}");
            }
        }
        assert!(read_here > 100, "only {read_here} read here");
    }

    #[test]
    fn documents_beyond_the_depth_limit_are_left_to_serde_saphyr() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(fast(&deep).is_none());
        let fine = format!("{}1{}", "[".repeat(20), "]".repeat(20));
        same(&fine);
    }
}
