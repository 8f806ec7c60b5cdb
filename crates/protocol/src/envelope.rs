//! The envelope: the one shape of every message on the wire.

use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use crate::errors::{ErrorCode, GzError};
use crate::events;
use crate::identity::Identity;
use crate::records::JsonText;
use crate::target::Target;
use crate::PROTOCOL_VERSION;

/// One message between components, routed by the hub.
///
/// Replies are envelopes whose `event` is [`events::REPLY`] (payload [`Reply`]) and whose
/// `correlation_id` is the `id` of the request they answer.
///
/// The payload type is a parameter so that the hub can route envelopes without parsing
/// their payloads ([`RawEnvelope`]); everything else uses the default, a JSON [`Value`].
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[schemars(bound = "P: JsonSchema + Default + Serialize")]
pub struct Envelope<P = Value> {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    #[serde(default = "default_version")]
    pub v: u32,
    /// Unique message id (a UUID string).
    pub id: String,
    /// For replies: the id of the request. For other messages: the id of the request or
    /// workflow that caused this message, so one chain can be followed through the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The sending component's id. The hub overwrites it with the id it knows for the
    /// socket, so it cannot be spoofed.
    #[serde(default)]
    pub source: String,
    /// Where the hub should deliver the message.
    pub target: Target,
    /// Event name (see [`events`]).
    pub event: String,
    /// Event-specific payload (see [`crate::payloads`]).
    #[serde(default)]
    pub payload: P,
    /// The authenticated sender, stamped by the hub on every envelope it forwards (who sent
    /// it, with which role). Clients never set it; the hub overwrites what a client sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Identity>,
    /// Milliseconds since the Unix epoch when the message was created.
    #[serde(default)]
    pub ts: u64,
    /// Set on each part of a big message sent in parts (its payload is a piece of the
    /// whole payload's JSON text, as a string): see [`Part`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
    /// The payload as JSON text, not parsed, for a large message whose receiver reads it
    /// straight into its own types (a submission, a plan: see
    /// [`crate::events::KEPT_AS_TEXT`]); `payload` is null then. Never on the wire.
    #[serde(skip)]
    #[schemars(skip)]
    pub raw: Option<JsonText>,
    /// The payload's JSON text as the pieces it came in, in order and not joined, for a
    /// message that came in parts whose receiver reads it as it goes, letting go of each
    /// piece once read (a plan: see [`crate::events::READ_IN_PIECES`]); `payload` is null
    /// and `raw` is `None` then. Never on the wire.
    #[serde(skip)]
    #[schemars(skip)]
    pub pieces: Option<Vec<String>>,
}

/// One part of a message too big to travel whole (`docs/protocol.md`, "Big messages in
/// parts"). The parts carry the message's event and target, and as payload a piece of its
/// payload's JSON text (a string); the receiving `hub-client` joins the pieces in order of
/// `index` once all `count` have come from the same sender, and hands on the whole message
/// with the id `of` (what its reply answers).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub struct Part {
    /// The id of the whole message.
    pub of: String,
    /// This part's place, from 0.
    pub index: u32,
    /// How many parts the message has.
    pub count: u32,
}

fn default_version() -> u32 {
    PROTOCOL_VERSION
}

/// An envelope whose payload is kept as unparsed JSON text (what the hub routes).
pub type RawEnvelope = Envelope<Option<Box<serde_json::value::RawValue>>>;

impl<P> Envelope<P> {
    /// True when this envelope answers a request.
    pub fn is_reply(&self) -> bool {
        self.event == events::REPLY
    }

    /// The same envelope with its payload converted.
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> Envelope<Q> {
        Envelope {
            v: self.v,
            id: self.id,
            correlation_id: self.correlation_id,
            source: self.source,
            target: self.target,
            event: self.event,
            payload: f(self.payload),
            auth: self.auth,
            ts: self.ts,
            part: self.part,
            raw: self.raw,
            pieces: self.pieces,
        }
    }
}

impl RawEnvelope {
    /// The envelope with its payload kept as text in [`Envelope::raw`] (payload null).
    pub fn kept_as_text(self) -> Envelope {
        let mut raw = None;
        let mut env = self.map_payload(|p| {
            raw = p;
            Value::Null
        });
        env.raw = raw.map(JsonText::from_raw);
        env
    }

    /// Parses the payload into a JSON value (null when absent or invalid).
    pub fn parsed(self) -> Envelope {
        self.map_payload(|raw| {
            raw.and_then(|r| serde_json::from_str(r.get()).ok())
                .unwrap_or(Value::Null)
        })
    }
}

impl Envelope {
    /// A new message whose payload is JSON text already written (sent as it is, never
    /// parsed into values on the way out).
    pub fn with_text(target: Target, event: impl Into<String>, payload: JsonText) -> Self {
        let mut env = Envelope::new(target, event, Value::Null);
        env.raw = Some(payload);
        env
    }

    /// The envelope as JSON text for the wire: the payload comes from [`Envelope::raw`]
    /// when it is kept as text.
    pub fn to_wire(&self) -> serde_json::Result<String> {
        let Some(raw) = &self.raw else {
            return serde_json::to_string(self);
        };
        serde_json::to_string(&self.with_payload(raw))
    }

    /// [`Envelope::to_wire`] appended to `out` (a caller that wraps the envelope, like a
    /// Socket.IO packet, writes it once into its own buffer).
    pub fn write_wire(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match &self.raw {
            None => serde_json::to_writer(out, self),
            Some(raw) => serde_json::to_writer(out, &self.with_payload(raw)),
        }
    }

    /// Bytes to reserve for [`Envelope::write_wire`]: a payload kept as text plus room for
    /// the head, so that a message of megabytes is written without regrowing its buffer.
    pub fn wire_size_hint(&self) -> usize {
        const HEAD: usize = 512;
        HEAD + self.raw.as_ref().map_or(0, JsonText::len)
    }

    /// A new message with a fresh id.
    pub fn new(target: Target, event: impl Into<String>, payload: Value) -> Self {
        Envelope {
            v: PROTOCOL_VERSION,
            id: new_id(),
            correlation_id: None,
            source: String::new(),
            target,
            event: event.into(),
            payload,
            auth: None,
            ts: now_millis(),
            part: None,
            raw: None,
            pieces: None,
        }
    }

    /// Sets the correlation id (builder style).
    pub fn correlated(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// The reply to this envelope, addressed back to its source.
    pub fn reply(&self, reply: Reply) -> Envelope {
        let payload = serde_json::to_value(&reply).unwrap_or(Value::Null);
        Envelope::new(
            Target::Component(self.source.clone()),
            events::REPLY,
            payload,
        )
        .correlated(self.id.clone())
    }

    /// A successful reply carrying `data`.
    pub fn reply_ok(&self, data: impl Serialize) -> Envelope {
        self.reply(Reply::ok(data))
    }

    /// A successful reply carrying `data`, serialized straight to JSON text (no tree of
    /// values in between: the reply to a big read can be tens of megabytes). The same
    /// `{"ok": data}` on the wire as [`Envelope::reply_ok`].
    pub fn reply_ok_text(&self, data: &impl Serialize) -> Result<Envelope, serde_json::Error> {
        #[derive(Serialize)]
        struct Ok<'a, T> {
            ok: &'a T,
        }
        let text = crate::records::JsonText::of(&Ok { ok: data })?;
        Ok(
            Envelope::with_text(Target::Component(self.source.clone()), events::REPLY, text)
                .correlated(self.id.clone()),
        )
    }

    /// The envelope without its payload: what answering it needs (who sent it, its id),
    /// for a request answered later whose payload was already read.
    pub fn head(&self) -> Envelope {
        self.with_payload(Value::Null)
    }

    /// A copy of the envelope's head (everything but the payload) with `payload`.
    fn with_payload<Q>(&self, payload: Q) -> Envelope<Q> {
        Envelope {
            v: self.v,
            id: self.id.clone(),
            correlation_id: self.correlation_id.clone(),
            source: self.source.clone(),
            target: self.target.clone(),
            event: self.event.clone(),
            payload,
            auth: self.auth.clone(),
            ts: self.ts,
            part: self.part.clone(),
            raw: None,
            pieces: None,
        }
    }

    /// An error reply.
    pub fn reply_err(&self, error: GzError) -> Envelope {
        self.reply(Reply::Err { error })
    }

    /// Deserializes the payload into a typed payload (from its text when it is kept as
    /// text, [`Envelope::raw`]), or a GZ7020 error naming the event.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, GzError> {
        let read = match &self.raw {
            Some(raw) => raw.parse(),
            None => T::deserialize(&self.payload),
        };
        read.map_err(|e| {
            GzError::new(
                ErrorCode::InvalidPayload,
                format!("invalid payload for event {:?}: {e}", self.event),
            )
        })
    }
}

/// The payload of a [`events::REPLY`] envelope: either `{"ok": <data>}` or
/// `{"error": {code, message, hint, retryable}}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Reply {
    /// Success, with data.
    Ok {
        /// The result.
        ok: Value,
    },
    /// Failure.
    Err {
        /// What went wrong.
        error: GzError,
    },
}

impl Reply {
    /// A successful reply.
    pub fn ok(data: impl Serialize) -> Reply {
        Reply::Ok {
            ok: serde_json::to_value(data).unwrap_or(Value::Null),
        }
    }

    /// Converts into a `Result`.
    pub fn into_result(self) -> Result<Value, GzError> {
        match self {
            Reply::Ok { ok } => Ok(ok),
            Reply::Err { error } => Err(error),
        }
    }
}

/// A fresh message id: a random (version 4) UUID from the thread's generator, which the
/// operating system seeds (a CSPRNG, so ids cannot be guessed); unlike `Uuid::new_v4` it
/// does not make a `getrandom` system call for every message.
pub fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1_000);
        for id in ids.iter().take(10) {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
    }

    #[test]
    fn envelope_json_shape_is_stable() {
        let env = Envelope::new(
            Target::Type("queue-manager".into()),
            "workflow_submit",
            json!({"a": 1}),
        )
        .correlated("c-1");
        let v = serde_json::to_value(&env).expect("serializes");
        assert_eq!(v["target"], "type:queue-manager");
        assert_eq!(v["event"], "workflow_submit");
        assert_eq!(v["correlation_id"], "c-1");
        assert_eq!(v["v"], 1);
        let back: Envelope = serde_json::from_value(v).expect("parses");
        assert_eq!(back, env);
    }

    #[test]
    fn minimal_envelope_from_a_foreign_client_parses() {
        let v = json!({"id": "x", "target": "hub", "event": "subscribe", "payload": {"rooms": ["events"]}});
        let env: Envelope = serde_json::from_value(v).expect("parses");
        assert_eq!(env.v, PROTOCOL_VERSION);
        assert_eq!(env.target, Target::Hub);
    }

    #[test]
    fn replies_are_correlated_to_the_request() {
        let mut req = Envelope::new(Target::Hub, "list_components", Value::Null);
        req.source = "cli-7".into();
        let rep = req.reply_err(GzError::new(ErrorCode::NoRoute, "nobody"));
        assert_eq!(rep.correlation_id.as_deref(), Some(req.id.as_str()));
        assert_eq!(rep.target, Target::Component("cli-7".into()));
        let reply: Reply = rep.payload_as().expect("reply");
        assert!(matches!(reply, Reply::Err { ref error } if error.code == "GZ1020"));
    }
}
