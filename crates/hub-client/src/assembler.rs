//! Receiving a big message in parts (`docs/protocol.md`, "Big messages in parts"; the
//! sending side is `parts.rs`).
//!
//! The receiving client joins the parts ([`Assembler`]) and hands on the whole message, with
//! the id of the message, before anything else sees it. Pieces that come in order (as one
//! sender's parts relayed by one hub do) are appended to the message's text at once, so the
//! text is held once, not once as pieces and once joined. Parts are kept per sender (the hub
//! stamps the sender on each), at most [`MAX_OPEN`] messages and twice [`MAX_MESSAGE_BYTES`]
//! at once, for at most [`PART_TIMEOUT`], and a message of more than [`MAX_MESSAGE_BYTES`]
//! is refused: a sender that stops halfway, or sends nonsense, leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use gleitzeit_protocol::envelope::Part;
use gleitzeit_protocol::events;
use gleitzeit_protocol::limits::{MAX_MESSAGE_BYTES, MESSAGE_PART_BYTES};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::Envelope;
use serde_json::Value;

/// Most messages whose parts are being received at once.
pub(crate) const MAX_OPEN: usize = 16;
/// Most bytes of parts held at once, over all messages (two of the largest messages).
const MAX_OPEN_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// A message whose parts have not all come within this time is dropped.
pub(crate) const PART_TIMEOUT: Duration = Duration::from_secs(60);
/// Most parts one message may have.
const MAX_PARTS: usize = MAX_MESSAGE_BYTES / MESSAGE_PART_BYTES + 1;

/// A message whose parts are coming in.
struct Open {
    head: Envelope,
    count: usize,
    /// The pieces joined so far, in order: every piece before `next`.
    text: String,
    /// For an event read in pieces ([`events::READ_IN_PIECES`]): the pieces before `next`,
    /// kept apart instead of joined into `text`.
    in_order: Option<Vec<String>>,
    /// The index of the piece to append next.
    next: usize,
    /// Pieces that came before their turn, by index.
    early: BTreeMap<usize, String>,
    bytes: usize,
    since: Instant,
}

/// Messages being received in parts, by sender and message id.
pub(crate) struct Assembler {
    open: HashMap<(String, String), Open>,
    /// Most bytes of parts held at once ([`MAX_OPEN_BYTES`]).
    max_bytes: usize,
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler {
            open: HashMap::new(),
            max_bytes: MAX_OPEN_BYTES,
        }
    }
}

impl Assembler {
    /// Takes one part: the whole message once its last part came, `Ok(None)` while parts
    /// are missing, an error (and the message dropped) for a part that does not fit.
    pub(crate) fn add(
        &mut self,
        mut env: Envelope,
        now: Instant,
    ) -> Result<Option<Envelope>, String> {
        self.open
            .retain(|_, o| now.saturating_duration_since(o.since) < PART_TIMEOUT);
        let Some(part) = env.part.clone() else {
            return Ok(Some(env));
        };
        let key = (env.source.clone(), part.of.clone());
        let result = piece_of(&mut env).and_then(|piece| self.take(&key, part, env, piece, now));
        if result.is_err() {
            self.open.remove(&key);
        }
        result
    }

    fn take(
        &mut self,
        key: &(String, String),
        part: Part,
        env: Envelope,
        piece: String,
        now: Instant,
    ) -> Result<Option<Envelope>, String> {
        let count = part.count as usize;
        let index = part.index as usize;
        if count == 0 || count > MAX_PARTS || index >= count {
            return Err(format!("part {index} of {count} is out of range"));
        }
        let held: usize = self.open.values().map(|o| o.bytes).sum();
        if held.saturating_add(piece.len()) > self.max_bytes {
            return Err(format!(
                "more than {} bytes of messages in parts at once; dropped",
                self.max_bytes
            ));
        }
        if !self.open.contains_key(key) && self.open.len() >= MAX_OPEN {
            return Err(format!(
                "more than {MAX_OPEN} messages in parts at once; dropped"
            ));
        }
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            head: Envelope {
                payload: Value::Null,
                raw: None,
                part: None,
                ..env.clone()
            },
            count,
            text: String::new(),
            in_order: events::READ_IN_PIECES
                .contains(&env.event.as_str())
                .then(Vec::new),
            next: 0,
            early: BTreeMap::new(),
            bytes: 0,
            since: now,
        });
        fn user(e: &Envelope) -> Option<&str> {
            e.auth.as_ref().map(|i| i.user.as_str())
        }
        if open.count != count || open.head.event != env.event || user(&open.head) != user(&env) {
            return Err("a part that does not match the parts before it".to_owned());
        }
        if index < open.next || open.early.contains_key(&index) {
            return Ok(None); // a repeated part changes nothing
        }
        open.bytes = open.bytes.saturating_add(piece.len());
        if open.bytes > MAX_MESSAGE_BYTES {
            return Err(format!(
                "a message in parts larger than {MAX_MESSAGE_BYTES} bytes"
            ));
        }
        if index == open.next {
            open.append(piece);
            while let Some(piece) = open.early.remove(&open.next) {
                open.append(piece);
            }
        } else {
            open.early.insert(index, piece);
        }
        if open.next < count {
            return Ok(None);
        }
        let Some(open) = self.open.remove(key) else {
            return Ok(None);
        };
        whole(open, &part.of).map(Some)
    }
}

impl Open {
    /// Appends the next piece in order.
    fn append(&mut self, piece: String) {
        match &mut self.in_order {
            Some(pieces) => pieces.push(piece),
            None => self.text.push_str(&piece),
        }
        self.next += 1;
    }
}

/// The piece of text a part carries (its payload, a string), taken out of it.
fn piece_of(env: &mut Envelope) -> Result<String, String> {
    if let Some(raw) = env.raw.take() {
        return raw
            .parse::<String>()
            .map_err(|_| "a part whose payload is not a string".to_owned());
    }
    match std::mem::take(&mut env.payload) {
        Value::String(s) => Ok(s),
        _ => Err("a part whose payload is not a string".to_owned()),
    }
}

/// The message its parts make: its pieces as they are for an event read in pieces
/// ([`events::READ_IN_PIECES`]); else the pieces joined, checked to be JSON, and kept as
/// text or parsed as the event's receivers expect (as for a whole one:
/// [`crate::connection::kept_as_text`]).
fn whole(open: Open, id: &str) -> Result<Envelope, String> {
    let mut env = Envelope {
        id: id.to_owned(),
        ..open.head
    };
    // Read as it goes by its receiver, which finds out then whether it is JSON.
    if let Some(pieces) = open.in_order {
        env.pieces = Some(pieces);
        return Ok(env);
    }
    let raw = JsonText::from_text(open.text)
        .map_err(|e| format!("a message in parts that is not JSON: {e}"))?;
    if crate::connection::kept_as_text(&env.event, raw.len()) {
        env.raw = Some(raw);
    } else {
        env.payload = raw.to_value();
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::events;
    use gleitzeit_protocol::{Identity, Role, Target};
    use serde_json::json;

    use crate::parts::Outbound;

    /// `env` as its sender cuts it: whole, or its parts.
    fn split(env: Envelope, part_bytes: usize) -> Vec<Envelope> {
        match Outbound::of_envelope(env, part_bytes) {
            Outbound::One(env) => vec![env],
            Outbound::Parts(parts) => parts.collect(),
        }
    }

    fn big(event: &str, text: &str) -> Envelope {
        let mut env = Envelope::with_text(
            Target::Type("queue-manager".into()),
            event,
            JsonText::from_text(text.to_owned()).expect("json"),
        );
        env.correlation_id = Some("c-1".into());
        env
    }

    /// The parts as the hub delivers them: stamped with the sender and its identity.
    fn delivered(parts: Vec<Envelope>, source: &str, user: &str) -> Vec<Envelope> {
        parts
            .into_iter()
            .map(|mut p| {
                p.source = source.to_owned();
                p.auth = Some(Identity {
                    user: user.to_owned(),
                    role: Role::User,
                    key_id: None,
                });
                p
            })
            .collect()
    }

    /// `text` sent by `source` (user `u`) in parts of `size` bytes, as delivered.
    fn sent_by(source: &str, text: &str, size: usize) -> Vec<Envelope> {
        delivered(split(big("x", text), size), source, "u")
    }

    fn assemble(parts: Vec<Envelope>) -> Vec<Envelope> {
        let mut a = Assembler::default();
        let now = Instant::now();
        parts
            .into_iter()
            .filter_map(|p| a.add(p, now).expect("fits"))
            .collect()
    }

    #[test]
    fn a_big_payload_travels_in_parts_and_comes_back_whole_with_its_id() {
        // Multi-byte characters straddle the piece boundaries; over 64 KiB, as a message in
        // parts always is (a big submission is kept as text for its receiver).
        let text = json!({ "spec": "äöü€🙂".repeat(7000), "n": [1, 2, 3] }).to_string();
        let env = big(events::WORKFLOW_SUBMIT, &text);
        let id = env.id.clone();
        let parts = split(env, 6 * 1024);
        assert!(parts.len() > 10);
        assert!(parts
            .iter()
            .all(|p| p.part.as_ref().is_some_and(|x| x.of == id)));
        assert!(parts
            .iter()
            .all(|p| p.event == events::WORKFLOW_SUBMIT && p.raw.is_none()));
        let mut got = assemble(delivered(parts, "cli-1", "ada"));
        assert_eq!(got.len(), 1);
        let whole = got.remove(0);
        assert_eq!(whole.id, id);
        assert_eq!(whole.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(whole.source, "cli-1");
        assert!(whole.part.is_none());
        // A submission is kept as text for its receiver, as a whole one would be.
        assert_eq!(
            whole.raw.as_ref().and_then(JsonText::text),
            Some(text.as_str())
        );
    }

    #[test]
    fn a_plan_in_parts_is_handed_on_as_its_pieces_in_order() {
        let text = json!({ "spec": "äöü€🙂".repeat(500), "workflow_id": "w" }).to_string();
        let env = big(events::WORKFLOW_PLAN, &text);
        let mut parts = delivered(split(env, 1000), "qm-1", "qm");
        let n = parts.len();
        parts.swap(0, n - 1);
        let whole = assemble(parts).remove(0);
        assert!(whole.raw.is_none() && whole.payload.is_null());
        let pieces = whole.pieces.expect("pieces");
        assert_eq!(pieces.len(), n);
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn parts_come_in_any_order_and_interleaved_with_another_senders() {
        let a = sent_by("s-1", r#"{"a":"aaaaaaaaaaaaaaaaaaaa"}"#, 5);
        let b = sent_by("s-2", r#"{"b":"bbbbbbbbbbbbbbbbbbbb"}"#, 5);
        let mut mixed: Vec<Envelope> = a.into_iter().rev().chain(b).collect();
        mixed.swap(1, 7);
        let whole = assemble(mixed);
        let payloads: Vec<Value> = whole.iter().map(|e| e.payload.clone()).collect();
        assert_eq!(payloads.len(), 2);
        assert!(payloads.contains(&json!({"a": "aaaaaaaaaaaaaaaaaaaa"})));
        assert!(payloads.contains(&json!({"b": "bbbbbbbbbbbbbbbbbbbb"})));
    }

    #[test]
    fn a_small_message_or_one_not_kept_as_text_goes_whole() {
        let env = big("x", r#"{"a":1}"#);
        assert_eq!(split(env.clone(), 1024), vec![env]);
        let plain = Envelope::new(Target::Hub, "x", json!({"a": "b".repeat(100)}));
        assert_eq!(split(plain.clone(), 8).len(), 1);
    }

    #[test]
    fn parts_that_do_not_fit_are_refused_and_leave_nothing_behind() {
        let parts = sent_by("s-1", r#"{"a":"aaaaaaaaaaaaaaaa"}"#, 4);
        let now = Instant::now();
        let mut a = Assembler::default();
        // A piece that is not a string.
        let mut bad = parts[0].clone();
        bad.payload = json!(3);
        assert!(a.add(bad, now).is_err());
        // Out of range, and a count that changes halfway.
        let mut bad = parts[1].clone();
        if let Some(p) = bad.part.as_mut() {
            p.index = p.count;
        }
        assert!(a.add(bad, now).is_err());
        assert_eq!(a.add(parts[0].clone(), now), Ok(None));
        let mut bad = parts[1].clone();
        if let Some(p) = bad.part.as_mut() {
            p.count += 1;
        }
        assert!(a.add(bad, now).is_err());
        assert!(a.open.is_empty(), "the message was dropped");
        // Another user's part under the same sender and message id.
        assert_eq!(a.add(parts[0].clone(), now), Ok(None));
        let mut other = parts[1].clone();
        other.auth = Some(Identity {
            user: "mallory".into(),
            role: Role::User,
            key_id: None,
        });
        assert!(a.add(other, now).is_err());
        // Pieces that do not make JSON.
        let mut garbled = parts.clone();
        garbled[0].payload = json!("{{{{");
        let now2 = Instant::now();
        let mut b = Assembler::default();
        let results: Vec<_> = garbled.into_iter().map(|p| b.add(p, now2)).collect();
        assert!(results.last().is_some_and(Result::is_err));
        assert!(b.open.is_empty());
    }

    #[test]
    fn a_message_never_finished_is_forgotten_and_open_messages_are_bounded() {
        let now = Instant::now();
        let mut a = Assembler::default();
        for k in 0..MAX_OPEN {
            let parts = sent_by(&format!("s-{k}"), r#"{"a":"aaaaaaaaaaaa"}"#, 4);
            assert_eq!(a.add(parts[0].clone(), now), Ok(None));
        }
        let one_more = sent_by("s-x", r#"{"a":"aaaaaaaaaaaa"}"#, 4);
        assert!(a.add(one_more[0].clone(), now).is_err());
        let later = now + PART_TIMEOUT;
        assert_eq!(a.add(one_more[0].clone(), later), Ok(None));
        assert_eq!(a.open.len(), 1, "the unfinished ones expired");
    }

    #[test]
    fn the_bytes_held_for_all_senders_together_are_bounded() {
        let now = Instant::now();
        let mut a = Assembler {
            max_bytes: 40,
            ..Assembler::default()
        };
        let text = r#"{"a":"aaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#; // 36 bytes: 3 parts of 12
        let first = sent_by("s-1", text, 12);
        let second = sent_by("s-2", text, 12);
        assert_eq!(a.add(first[0].clone(), now), Ok(None));
        assert_eq!(a.add(first[1].clone(), now), Ok(None));
        assert_eq!(a.add(second[0].clone(), now), Ok(None));
        // 36 held: the next 12 would pass 40, so that message is dropped.
        assert!(a.add(second[1].clone(), now).is_err());
        assert_eq!(a.open.len(), 1);
        let whole = a.add(first[2].clone(), now).expect("fits").expect("whole");
        assert_eq!(whole.raw.as_ref().and_then(JsonText::text), None);
        assert_eq!(
            whole.payload,
            serde_json::from_str::<Value>(text).expect("json")
        );
    }
}
