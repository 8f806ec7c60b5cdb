//! Sending a big message in parts (`docs/protocol.md`, "Big messages in parts").
//!
//! A message whose payload text is larger than [`MESSAGE_PART_BYTES`] goes as parts:
//! envelopes with the message's event, target and correlation, each carrying a piece of the
//! payload's JSON text as a string and a [`Part`] saying which piece of how many of which
//! message. So the hub relays pieces of a megabyte, never one message of tens of megabytes,
//! and no receiver's websocket keeps a buffer as large as the largest message it ever read.
//! The receiving client joins them again (`assembler.rs`).
//!
//! The payload's text may be given as several pieces that follow one another
//! ([`TextPiece`]: a plan's head, the spec as the store gave it, its tail), and the parts
//! are made one at a time as the connection takes them ([`Parts`]): the sender never holds
//! the payload joined into one buffer, nor all its parts at once.
//!
//! [`MESSAGE_PART_BYTES`]: gleitzeit_protocol::limits::MESSAGE_PART_BYTES

use gleitzeit_protocol::envelope::{new_id, Part};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::Envelope;
use serde_json::Value;

/// A piece of a payload's JSON text: the pieces of one payload, in order, make its text.
#[derive(Debug, Clone)]
pub enum TextPiece {
    /// Text written for this message (not JSON on its own: a head such as `{"spec":`).
    Owned(String),
    /// JSON kept as text elsewhere (a stored spec), passed on without a copy.
    Json(JsonText),
}

impl TextPiece {
    fn as_str(&self) -> &str {
        match self {
            TextPiece::Owned(s) => s,
            TextPiece::Json(j) => j.text().unwrap_or("null"),
        }
    }
}

/// What a message in parts is made of: the head of every part, the payload's text and how
/// it is cut.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The message's envelope without its payload (id, correlation, target, event).
    head: Envelope,
    text: Vec<TextPiece>,
    /// Where the next part's piece starts: (piece of `text`, byte offset in it).
    at: (usize, usize),
    index: u32,
    count: u32,
    part_bytes: usize,
}

/// A message to send: whole, or in parts made as they go out.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One envelope.
    One(Envelope),
    /// A big message, cut into parts one at a time.
    Parts(Parts),
}

impl Outbound {
    /// `head` with the payload `text` (the pieces in order): in parts of at most
    /// `part_bytes` bytes when longer than that, else one envelope keeping the joined text
    /// ([`Envelope::raw`]); an error when the text is not JSON.
    pub(crate) fn of_text(
        head: Envelope,
        text: Vec<TextPiece>,
        part_bytes: usize,
    ) -> Result<Outbound, String> {
        let part_bytes = part_bytes.max(4);
        let total: usize = text.iter().map(|p| p.as_str().len()).sum();
        if total > part_bytes {
            return Ok(Outbound::Parts(Parts::new(head, text, part_bytes)));
        }
        let mut joined = String::with_capacity(total);
        text.iter().for_each(|p| joined.push_str(p.as_str()));
        let joined = JsonText::from_text(joined).map_err(|e| e.to_string())?;
        Ok(Outbound::One(Envelope {
            raw: Some(joined),
            payload: Value::Null,
            ..head
        }))
    }

    /// `env` in parts of at most `part_bytes` bytes when its payload is kept as text and
    /// longer than that; else `env` itself.
    pub(crate) fn of_envelope(mut env: Envelope, part_bytes: usize) -> Outbound {
        match env.raw.take() {
            Some(raw) if raw.len() > part_bytes.max(4) => {
                Outbound::Parts(Parts::new(env, vec![TextPiece::Json(raw)], part_bytes))
            }
            raw => {
                env.raw = raw;
                Outbound::One(env)
            }
        }
    }

    /// Sets the sender of the message (and of each of its parts) when none is set.
    pub(crate) fn set_source(&mut self, source: &str) {
        let head = match self {
            Outbound::One(env) => env,
            Outbound::Parts(parts) => &mut parts.head,
        };
        if head.source.is_empty() {
            head.source = source.to_owned();
        }
    }
}

impl Parts {
    fn new(mut head: Envelope, text: Vec<TextPiece>, part_bytes: usize) -> Parts {
        let part_bytes = part_bytes.max(4);
        head.payload = Value::Null;
        head.raw = None;
        head.part = None;
        let (mut count, mut at) = (0u32, (0, 0));
        while let Some(next) = cut(&text, at, part_bytes, |_| {}) {
            count = count.saturating_add(1);
            at = next;
        }
        Parts {
            head,
            text,
            at: (0, 0),
            index: 0,
            count,
            part_bytes,
        }
    }

    /// The next part to send, or `None` when all went; it stays the next one until
    /// [`Parts::advance`] (a part that could not be sent goes again on the next connection).
    pub(crate) fn peek(&self) -> Option<Envelope> {
        let mut piece = String::with_capacity(self.part_bytes);
        cut(&self.text, self.at, self.part_bytes, |s| piece.push_str(s))?;
        let head = &self.head;
        Some(Envelope {
            v: head.v,
            id: new_id(),
            correlation_id: head.correlation_id.clone(),
            source: head.source.clone(),
            target: head.target.clone(),
            event: head.event.clone(),
            payload: Value::String(piece),
            auth: None,
            ts: head.ts,
            part: Some(Part {
                of: head.id.clone(),
                index: self.index,
                count: self.count,
            }),
            raw: None,
            pieces: None,
        })
    }

    /// The id of the whole message (what its reply answers).
    pub(crate) fn id(&self) -> &str {
        &self.head.id
    }

    /// The message's event.
    pub(crate) fn event(&self) -> &str {
        &self.head.event
    }

    /// Moves on past the part [`Parts::peek`] gave.
    pub(crate) fn advance(&mut self) {
        if let Some(next) = cut(&self.text, self.at, self.part_bytes, |_| {}) {
            self.at = next;
            self.index = self.index.saturating_add(1);
        }
    }
}

/// Every part at once, for tests.
#[cfg(test)]
impl Iterator for Parts {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        let part = self.peek()?;
        self.advance();
        Some(part)
    }
}

/// Walks one part's piece of at most `part_bytes` bytes of `text` from `at`, handing its
/// slices to `take`: where the next piece starts, or `None` when nothing is left. A piece
/// ends on a character boundary (each of `text`'s pieces is whole text, so their ends are
/// boundaries too).
fn cut(
    text: &[TextPiece],
    mut at: (usize, usize),
    part_bytes: usize,
    mut take: impl FnMut(&str),
) -> Option<(usize, usize)> {
    let mut room = part_bytes;
    let mut took = false;
    while let Some(piece) = text.get(at.0) {
        let rest = piece.as_str().get(at.1..).unwrap_or("");
        if rest.is_empty() {
            at = (at.0 + 1, 0);
            continue;
        }
        let mut end = rest.len().min(room);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            break;
        }
        take(&rest[..end]);
        took = true;
        room -= end;
        at.1 += end;
    }
    took.then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::Target;
    use serde_json::json;

    fn head() -> Envelope {
        Envelope::new(Target::Type("dependency-resolver".into()), "x", Value::Null)
    }

    fn pieces_of(parts: Parts) -> Vec<String> {
        parts
            .map(|p| match p.payload {
                Value::String(s) => s,
                other => panic!("a part's payload is a string: {other}"),
            })
            .collect()
    }

    #[test]
    fn text_given_in_pieces_is_cut_across_them_on_character_boundaries() {
        let spec = JsonText::of_value(&json!({ "s": "äöü€🙂".repeat(50) }));
        let text = vec![
            TextPiece::Owned(r#"{"spec":"#.into()),
            TextPiece::Json(spec.clone()),
            TextPiece::Owned(String::new()),
            TextPiece::Owned(r#","workflow_id":"w-1"}"#.into()),
        ];
        let whole: String = text.iter().map(TextPiece::as_str).collect();
        let Ok(Outbound::Parts(parts)) = Outbound::of_text(head(), text, 7) else {
            panic!("a payload over 7 bytes goes in parts");
        };
        let count = parts.count as usize;
        let pieces = pieces_of(parts);
        assert_eq!(pieces.len(), count, "the count is what was sent");
        assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= 7));
        assert_eq!(pieces.concat(), whole);
        let back: Value = serde_json::from_str(&pieces.concat()).expect("json");
        assert_eq!(back["spec"], spec.to_value());
    }

    #[test]
    fn every_part_names_the_message_its_place_and_the_count() {
        let env = Envelope::with_text(
            Target::Hub,
            "x",
            JsonText::of_value(&json!({"a": "b".repeat(100)})),
        )
        .correlated("c-1");
        let id = env.id.clone();
        let Outbound::Parts(parts) = Outbound::of_envelope(env, 10) else {
            panic!("in parts");
        };
        let all: Vec<Envelope> = parts.collect();
        assert!(all.len() > 10);
        for (i, p) in all.iter().enumerate() {
            let part = p.part.as_ref().expect("a part");
            assert_eq!((part.of.as_str(), part.index as usize), (id.as_str(), i));
            assert_eq!(part.count as usize, all.len());
            assert_eq!(p.correlation_id.as_deref(), Some("c-1"));
            assert!(p.raw.is_none() && p.id != id);
        }
    }

    #[test]
    fn a_part_not_sent_is_given_again_until_it_is() {
        let env = Envelope::with_text(Target::Hub, "x", JsonText::of_value(&json!("abcdefgh")));
        let Outbound::Parts(mut parts) = Outbound::of_envelope(env, 4) else {
            panic!("in parts");
        };
        let first = parts.peek().expect("a part");
        assert_eq!(parts.peek().map(|p| p.payload), Some(first.payload.clone()));
        parts.advance();
        assert_ne!(parts.peek().map(|p| p.payload), Some(first.payload));
        while parts.peek().is_some() {
            parts.advance();
        }
        parts.advance();
        assert!(parts.peek().is_none());
    }

    #[test]
    fn a_small_message_goes_whole_and_its_text_must_be_json() {
        let env = Envelope::with_text(Target::Hub, "x", JsonText::of_value(&json!({"a": 1})));
        assert!(matches!(Outbound::of_envelope(env.clone(), 1024), Outbound::One(e) if e == env));
        let text = vec![
            TextPiece::Owned("{\"a\":".into()),
            TextPiece::Json(JsonText::of_value(&json!([1]))),
            TextPiece::Owned("}".into()),
        ];
        let Ok(Outbound::One(one)) = Outbound::of_text(head(), text, 1024) else {
            panic!("whole");
        };
        assert_eq!(
            one.raw.as_ref().and_then(JsonText::text),
            Some(r#"{"a":[1]}"#)
        );
        let bad = vec![TextPiece::Owned("{\"a\":".into())];
        assert!(Outbound::of_text(head(), bad, 1024).is_err());
    }
}
