//! The OpenAI-compatible API: `GET /v1/models`, `POST /v1/chat/completions` (JSON or SSE
//! stream ending in `data: [DONE]`) and `POST /v1/embeddings`. Errors use OpenAI's shape.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{parse_body, ApiError, Dialect, DialectError};
use crate::ollama::{embed_inputs, embedding_pause, request_key};
use crate::state::Sim;
use crate::stream::{paced_body, Plan, Step};
use crate::text;

type ApiResult = Result<Response, DialectError>;

fn openai(e: ApiError) -> DialectError {
    e.into_dialect(Dialect::OpenAi)
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    /// A string, an array of content parts, or null.
    #[serde(default)]
    content: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    #[allow(dead_code)]
    temperature: Option<f64>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    #[serde(default)]
    input: Option<Value>,
}

/// The text of a message's content (text parts joined by newlines) and its image count.
fn content_text(content: &Value) -> (String, u64) {
    match content {
        Value::String(s) => (s.clone(), 0),
        Value::Array(parts) => {
            let mut texts = Vec::new();
            let mut images = 0;
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = part.get("text").and_then(Value::as_str) {
                            texts.push(t);
                        }
                    }
                    Some("image_url") => images += 1,
                    _ => {}
                }
            }
            (texts.join("\n"), images)
        }
        _ => (String::new(), 0),
    }
}

/// True when `response_format` asks for JSON (`json_object` or `json_schema`).
fn wants_json(format: &Option<Value>) -> bool {
    format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t != "text")
}

/// `GET /v1/models`.
pub async fn models(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let data: Vec<Value> = sim
        .models()
        .iter()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": text::unix_secs(m.modified_at),
                "owned_by": "library",
            })
        })
        .collect();
    Json(json!({ "object": "list", "data": data }))
}

/// `POST /v1/chat/completions`: answers `echo: <last user message>`.
pub async fn chat_completions(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: ChatRequest = parse_body(&body).map_err(openai)?;
    let served = sim
        .resolve_model(&req.model)
        .ok_or_else(|| openai(ApiError::ModelNotFound(req.model.clone())))?;
    if req.messages.is_empty() {
        return Err(openai(ApiError::BadRequest(
            "messages must not be empty".to_string(),
        )));
    }
    let mut prompt_tokens = 0;
    let mut images = 0;
    let mut last_user = String::new();
    for m in &req.messages {
        let (t, i) = content_text(&m.content);
        prompt_tokens += text::word_count(&t);
        images += i;
        if m.role == "user" {
            last_user = t;
        }
    }
    let reply = text::reply_for(&last_user, wants_json(&req.response_format));
    let mut tokens = text::tokenize(&reply);
    let limit = req.max_completion_tokens.or(req.max_tokens);
    let finish_reason = if text::truncate_tokens(&mut tokens, limit) {
        "length"
    } else {
        "stop"
    };
    let slot = sim
        .admit(request_key("/v1/chat/completions", &body), &served, images)
        .await
        .map_err(openai)?;
    let plan = Plan::new(&sim.knobs());
    let n = tokens.len() as u64;
    let id = format!("chatcmpl-{}", sim.next_id());
    let created = text::unix_secs(SystemTime::now());
    let model = req.model;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": n,
        "total_tokens": prompt_tokens + n,
    });
    if !req.stream {
        plan.finish(tokens.len()).await;
        drop(slot);
        return Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_llm_sim",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": tokens.concat() },
                "finish_reason": finish_reason,
            }],
            "usage": usage,
        }))
        .into_response());
    }
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let chunk = move |choices: Value| -> Value {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_llm_sim",
            "choices": choices,
        })
    };
    let sse = |v: Value| format!("data: {v}\n\n");
    let render = move |step: Step<'_>| match step {
        Step::Token(t) => sse(chunk(json!([{
            "index": 0,
            "delta": { "role": "assistant", "content": t },
            "finish_reason": null,
        }]))),
        Step::Done => {
            let mut out = sse(chunk(json!([{
                "index": 0,
                "delta": { "role": "assistant", "content": "" },
                "finish_reason": finish_reason,
            }])));
            if include_usage {
                let mut v = chunk(json!([]));
                v["usage"] = usage.clone();
                out.push_str(&sse(v));
            }
            out.push_str("data: [DONE]\n\n");
            out
        }
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

/// `POST /v1/embeddings`.
pub async fn embeddings(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: EmbeddingsRequest = parse_body(&body).map_err(openai)?;
    let served = sim
        .resolve_model(&req.model)
        .ok_or_else(|| openai(ApiError::ModelNotFound(req.model.clone())))?;
    let inputs = embed_inputs(req.input).map_err(openai)?;
    embedding_pause(&sim, "/v1/embeddings", &body, &served)
        .await
        .map_err(openai)?;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({ "object": "embedding", "embedding": text::embedding(t), "index": i }))
        .collect();
    let words: u64 = inputs.iter().map(|t| text::word_count(t)).sum();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": req.model,
        "usage": { "prompt_tokens": words, "total_tokens": words },
    }))
    .into_response())
}
