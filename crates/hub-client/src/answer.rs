//! What a request waiting for its reply is handed ([`Answer`]), and how a reply's text
//! becomes what the waiter wants: a [`Reply`] with one tree of values
//! ([`Answer::into_reply`]), or a type read straight from the text ([`Answer::into_typed`],
//! behind `PendingReply::reply_as`). Replies are kept as text by the connection (see
//! `connection::kept_as_text`), so a big one is parsed once.

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::{events, Envelope, Reply};
use serde_json::value::RawValue;
use serde_json::Value;

/// What a waiting request is handed: a reply as its text, read by the waiter into what it
/// wants ([`Answer::into_reply`], [`Answer::into_typed`]), or an answer made here (a hub
/// error, a registration, a lost connection).
pub(crate) enum Answer {
    /// A reply's payload, `{"ok": data}` or `{"error": {...}}`, as it came.
    Text(Option<JsonText>),
    /// An answer made by this client.
    Made(Reply),
}

impl Answer {
    /// The reply, its `ok` parsed into one tree of values (a reply kept as text is not
    /// parsed, copied and buffered again on its way).
    pub(crate) fn into_reply(self) -> Reply {
        match self {
            Answer::Made(reply) => reply,
            text => match text.into_typed::<Value>() {
                Ok(ok) => Reply::Ok { ok },
                Err(error) => Reply::Err { error },
            },
        }
    }

    /// The reply's `ok` read straight into `T`, or its error.
    pub(crate) fn into_typed<T: serde::de::DeserializeOwned>(self) -> Result<T, GzError> {
        let malformed = |e: serde_json::Error| {
            GzError::new(ErrorCode::InvalidPayload, format!("malformed reply: {e}"))
        };
        let text = match self {
            Answer::Made(reply) => {
                return reply
                    .into_result()
                    .and_then(|v| serde_json::from_value(v).map_err(malformed))
            }
            Answer::Text(text) => text,
        };
        let text = text.as_ref().and_then(JsonText::text).unwrap_or("null");
        // An object only: a derived struct would also take an array's items as its fields.
        if !text.starts_with('{') {
            return Err(GzError::new(
                ErrorCode::InvalidPayload,
                "malformed reply: not an object",
            ));
        }
        let wire: TypedReply<'_> = serde_json::from_str(text).map_err(malformed)?;
        match (wire.ok, wire.error) {
            (Some(ok), _) => serde_json::from_str(ok.get()).map_err(malformed),
            (None, Some(error)) => Err(error),
            (None, None) => Err(GzError::new(
                ErrorCode::InvalidPayload,
                "malformed reply: neither `ok` nor `error`",
            )),
        }
    }
}

/// A reply's two fields, `ok` only delimited (`"ok": null` included).
#[derive(serde::Deserialize)]
struct TypedReply<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    ok: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<GzError>,
}

/// A field that is there, whatever its value (`null` too).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// The answer a waiting request gets: a reply (kept as text, see [`crate::connection::kept_as_text`]) as its
/// text, anything else made here.
pub(crate) fn answer_of(env: Envelope) -> Answer {
    match env.event.as_str() {
        events::REGISTERED => Answer::Made(Reply::Ok { ok: env.payload }),
        events::ERROR => Answer::Made(
            match serde_json::from_value::<GzError>(env.payload.clone()) {
                Ok(error) => Reply::Err { error },
                Err(_) => Reply::Err {
                    error: GzError::new(ErrorCode::Internal, format!("hub error: {}", env.payload)),
                },
            },
        ),
        _ => Answer::Text(env.raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::decode;
    use crate::connection::decode_tests::body;
    use serde_json::json;

    #[test]
    fn a_reply_is_kept_as_text_and_read_once_into_its_answer() {
        let answer = |payload: Value| {
            let env = decode(&body(events::REPLY, payload)).expect("decodes");
            assert!(env.raw.is_some() || env.payload.is_null(), "kept as text");
            answer_of(env).into_reply()
        };
        let data = json!({ "ready": [{ "task_id": "t", "params": { "context": { "i": 7 } } }] });
        assert_eq!(
            answer(json!({ "ok": data.clone() })),
            Reply::Ok { ok: data }
        );
        assert_eq!(answer(json!({ "ok": null })), Reply::Ok { ok: Value::Null });
        let error = GzError::new(ErrorCode::WorkflowNotFound, "gone");
        assert_eq!(
            answer(json!({ "error": error.clone() })),
            Reply::Err { error }
        );
        // Anything else is a malformed reply (GZ7020), never a panic.
        for bad in [
            json!({}),
            json!({ "error": 7 }),
            json!([1]),
            json!("x"),
            Value::Null,
        ] {
            match answer(bad.clone()) {
                Reply::Err { error } => assert_eq!(error.code, "GZ7020", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_reply_is_read_straight_into_its_type() {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct Ready {
            ready: Vec<String>,
        }
        let typed = |payload: Value| {
            let env = decode(&body(events::REPLY, payload)).expect("decodes");
            answer_of(env).into_typed::<Ready>()
        };
        assert_eq!(
            typed(json!({ "ok": { "ready": ["a", "b"] } })),
            Ok(Ready {
                ready: vec!["a".into(), "b".into()]
            })
        );
        let error = GzError::new(ErrorCode::WorkflowNotFound, "gone");
        assert_eq!(typed(json!({ "error": error.clone() })), Err(error));
        // `ok: null` is there: a `T` that is not null-able is a malformed reply.
        let env = decode(&body(events::REPLY, json!({ "ok": null }))).expect("decodes");
        assert_eq!(answer_of(env).into_typed::<Option<u8>>(), Ok(None));
        for bad in [
            json!({ "ok": { "ready": 7 } }),
            json!({ "ok": null }),
            json!([{ "ready": [] }]),
            json!({}),
            json!({ "error": 7 }),
            Value::Null,
        ] {
            let e = typed(bad.clone()).expect_err("malformed");
            assert_eq!(e.code, "GZ7020", "{bad}");
        }
        // An answer made here converts the same way.
        let made = Answer::Made(Reply::Ok {
            ok: json!({ "ready": [] }),
        });
        assert_eq!(made.into_typed::<Ready>(), Ok(Ready { ready: vec![] }));
    }
}
