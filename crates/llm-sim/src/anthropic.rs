//! Anthropic's Messages API: `POST /v1/messages` (JSON, or server-sent events with
//! `message_start`, `content_block_delta`, … `message_stop` when `stream` is true) and its
//! model list `GET /v1/models` (the OpenAI list is answered instead when the request carries
//! no `anthropic-version` header). Errors use Anthropic's shape.
//!
//! Like the real API it insists on the `anthropic-version` header, a `max_tokens`, roles
//! `user`/`assistant` only (system prompts go in `system`) and a temperature within 0..=1.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::ANTHROPIC_VERSION;
use crate::error::{parse_body, ApiError, Dialect, DialectError};
use crate::ollama::request_key;
use crate::state::{bare_model_name, Sim};
use crate::stream::{paced_body, Plan, Step};
use crate::text;

type ApiResult = Result<Response, DialectError>;

fn anthropic(e: ApiError) -> DialectError {
    e.into_dialect(Dialect::Anthropic)
}

fn bad(message: &str) -> DialectError {
    anthropic(ApiError::BadRequest(message.to_string()))
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    /// A string or an array of content blocks (`text`, `image`).
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: String,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    messages: Vec<Message>,
    /// A string or an array of text blocks.
    #[serde(default)]
    system: Value,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    temperature: Option<f64>,
}

/// The text of a content value (text blocks joined by newlines) and its image count.
fn blocks_text(content: &Value) -> (String, u64) {
    match content {
        Value::String(s) => (s.clone(), 0),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            let mut images = 0;
            for block in blocks {
                match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = block.get("text").and_then(Value::as_str) {
                            texts.push(t);
                        }
                    }
                    Some("image") => images += 1,
                    _ => {}
                }
            }
            (texts.join("\n"), images)
        }
        _ => (String::new(), 0),
    }
}

/// `GET /v1/models`: Anthropic's list when the request carries `anthropic-version`, else
/// OpenAI's.
pub async fn models(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Json<Value> {
    if !headers.contains_key(ANTHROPIC_VERSION) {
        return crate::openai::models(State(sim)).await;
    }
    let data: Vec<Value> = sim
        .models()
        .iter()
        .map(|m| {
            let id = bare_model_name(&m.name);
            json!({
                "type": "model",
                "id": id,
                "display_name": id,
                "created_at": text::rfc3339(m.modified_at),
            })
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    Json(json!({ "data": data, "has_more": false, "first_id": first, "last_id": last }))
}

/// `POST /v1/messages`: answers `echo: <last user message>`.
pub async fn messages(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    if !headers.contains_key(ANTHROPIC_VERSION) {
        return Err(bad("anthropic-version: header is required"));
    }
    let req: MessagesRequest = parse_body(&body).map_err(anthropic)?;
    let max_tokens = match req.max_tokens {
        Some(n) if n >= 1 => n,
        Some(_) => return Err(bad("max_tokens: must be at least 1")),
        None => return Err(bad("max_tokens: Field required")),
    };
    if req.temperature.is_some_and(|t| !(0.0..=1.0).contains(&t)) {
        return Err(bad("temperature: must be within 0 and 1"));
    }
    if req.messages.is_empty() {
        return Err(bad("messages: at least one message is required"));
    }
    if let Some(m) = req
        .messages
        .iter()
        .find(|m| m.role != "user" && m.role != "assistant")
    {
        return Err(bad(&format!(
            "messages: unexpected role \"{}\"; system prompts go in the top-level `system`",
            m.role
        )));
    }
    let served = sim
        .resolve_model(&req.model)
        .ok_or_else(|| anthropic(ApiError::ModelNotFound(req.model.clone())))?;
    let (system, _) = blocks_text(&req.system);
    let mut prompt_tokens = text::word_count(&system);
    let mut images = 0;
    let mut last_user = String::new();
    for m in &req.messages {
        let (t, i) = blocks_text(&m.content);
        prompt_tokens += text::word_count(&t);
        images += i;
        if m.role == "user" {
            last_user = t;
        }
    }
    let mut tokens = text::tokenize(&text::reply_for(&last_user, false));
    let stop_reason = if text::truncate_tokens(&mut tokens, Some(max_tokens)) {
        "max_tokens"
    } else {
        "end_turn"
    };
    let slot = sim
        .admit(request_key("/v1/messages", &body), &served, images)
        .await
        .map_err(anthropic)?;
    let plan = Plan::new(&sim.knobs());
    let n = tokens.len() as u64;
    let id = format!("msg_sim_{}", sim.next_id());
    let model = req.model;
    if !req.stream {
        plan.finish(tokens.len()).await;
        drop(slot);
        return Ok(Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{ "type": "text", "text": tokens.concat() }],
            "stop_reason": stop_reason,
            "stop_sequence": null,
            "usage": { "input_tokens": prompt_tokens, "output_tokens": n },
        }))
        .into_response());
    }
    let start = json!({
        "type": "message_start",
        "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": prompt_tokens, "output_tokens": 1 },
        },
    });
    let mut started = false;
    let mut opening = move || -> String {
        if std::mem::replace(&mut started, true) {
            return String::new();
        }
        let block = json!({ "type": "content_block_start", "index": 0, "content_block": { "type": "text", "text": "" } });
        [
            sse("message_start", &start),
            sse("content_block_start", &block),
            sse("ping", &json!({ "type": "ping" })),
        ]
        .concat()
    };
    let render = move |step: Step<'_>| match step {
        Step::Token(t) => {
            let delta = json!({ "type": "content_block_delta", "index": 0, "delta": { "type": "text_delta", "text": t } });
            opening() + &sse("content_block_delta", &delta)
        }
        Step::Done => [
            opening(),
            sse(
                "content_block_stop",
                &json!({ "type": "content_block_stop", "index": 0 }),
            ),
            sse(
                "message_delta",
                &json!({
                    "type": "message_delta",
                    "delta": { "stop_reason": stop_reason, "stop_sequence": null },
                    "usage": { "output_tokens": n },
                }),
            ),
            sse("message_stop", &json!({ "type": "message_stop" })),
        ]
        .concat(),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        paced_body(tokens, plan, slot, render),
    )
        .into_response())
}

/// One server-sent event with a name.
fn sse(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}
