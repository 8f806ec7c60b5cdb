//! Google Gemini's API: `GET /v1beta/models`, `POST /v1beta/models/{model}:generateContent`
//! and `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` (server-sent events, one
//! `GenerateContentResponse` per token, usage on every chunk). Errors use Gemini's shape.
//!
//! Field names are accepted in camelCase and snake_case, as the real API does; roles are
//! `user` and `model` (system prompts go in `systemInstruction`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{parse_body, ApiError, Dialect, DialectError};
use crate::ollama::request_key;
use crate::state::{bare_model_name, Sim};
use crate::stream::{paced_body, Plan, Step};
use crate::text;

type ApiResult = Result<Response, DialectError>;

fn gemini(e: ApiError) -> DialectError {
    e.into_dialect(Dialect::Gemini)
}

fn bad(message: &str) -> DialectError {
    gemini(ApiError::BadRequest(message.to_string()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Part {
    text: Option<String>,
    #[serde(alias = "inline_data")]
    inline_data: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Content {
    role: Option<String>,
    parts: Vec<Part>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct GenerationConfig {
    #[allow(dead_code)]
    temperature: Option<f64>,
    #[serde(alias = "max_output_tokens")]
    max_output_tokens: Option<i64>,
    #[serde(alias = "response_mime_type")]
    response_mime_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct GenerateRequest {
    contents: Vec<Content>,
    #[serde(alias = "system_instruction")]
    system_instruction: Option<Content>,
    #[serde(alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

/// The text of a content's parts (joined by newlines) and its image count.
fn parts_text(content: &Content) -> (String, u64) {
    let texts: Vec<&str> = content
        .parts
        .iter()
        .filter_map(|p| p.text.as_deref())
        .collect();
    let images = content
        .parts
        .iter()
        .filter(|p| p.inline_data.is_some())
        .count() as u64;
    (texts.join("\n"), images)
}

/// `GET /v1beta/models`.
pub async fn models(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let models: Vec<Value> = sim
        .models()
        .iter()
        .map(|m| {
            let id = bare_model_name(&m.name);
            json!({
                "name": format!("models/{id}"),
                "version": "001",
                "displayName": id,
                "inputTokenLimit": 1_048_576,
                "outputTokenLimit": 8192,
                "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

/// `POST /v1beta/models/{model}:{action}`: `generateContent`, or `streamGenerateContent`
/// with `alt=sse`; answers `echo: <last user text>`.
pub async fn model_action(
    State(sim): State<Arc<Sim>>,
    Path(target): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult {
    let Some((model, action)) = target.rsplit_once(':') else {
        return Err(bad("the path must name `{model}:{action}`"));
    };
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" if query.get("alt").map(String::as_str) == Some("sse") => true,
        "streamGenerateContent" => {
            return Err(bad("llm-sim streams only with alt=sse"));
        }
        other => return Err(bad(&format!("unknown action {other:?}"))),
    };
    let req: GenerateRequest = parse_body(&body).map_err(gemini)?;
    if req.contents.is_empty() {
        return Err(bad("contents is not specified"));
    }
    if let Some(role) = req
        .contents
        .iter()
        .filter_map(|c| c.role.as_deref())
        .find(|r| *r != "user" && *r != "model")
    {
        return Err(bad(&format!(
            "Please use a valid role: user, model. (got {role:?})"
        )));
    }
    let served = sim
        .resolve_model(model)
        .ok_or_else(|| gemini(ApiError::ModelNotFound(model.to_string())))?;
    let config = req.generation_config.unwrap_or_default();
    let wants_json = config
        .response_mime_type
        .as_deref()
        .is_some_and(|m| m.contains("json"));
    let mut prompt_tokens = req
        .system_instruction
        .as_ref()
        .map_or(0, |s| text::word_count(&parts_text(s).0));
    let mut images = 0;
    let mut last_user = String::new();
    for c in &req.contents {
        let (t, i) = parts_text(c);
        prompt_tokens += text::word_count(&t);
        images += i;
        if c.role.as_deref().unwrap_or("user") == "user" {
            last_user = t;
        }
    }
    let mut tokens = text::tokenize(&text::reply_for(&last_user, wants_json));
    let finish = if text::truncate_tokens(&mut tokens, config.max_output_tokens) {
        "MAX_TOKENS"
    } else {
        "STOP"
    };
    let endpoint = if stream {
        "/v1beta/models/{model}:streamGenerateContent"
    } else {
        "/v1beta/models/{model}:generateContent"
    };
    let slot = sim
        .admit(request_key(endpoint, &body), &served, images)
        .await
        .map_err(gemini)?;
    let plan = Plan::new(&sim.knobs());
    let model = bare_model_name(model).to_string();
    let n = tokens.len() as u64;
    let chunk = move |text: &str, finish: Option<&str>, so_far: u64| -> Value {
        let mut candidate =
            json!({ "content": { "parts": [{ "text": text }], "role": "model" }, "index": 0 });
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": so_far,
                "totalTokenCount": prompt_tokens + so_far,
            },
            "modelVersion": model,
        })
    };
    if !stream {
        plan.finish(tokens.len()).await;
        drop(slot);
        return Ok(Json(chunk(&tokens.concat(), Some(finish), n)).into_response());
    }
    let mut sent = 0;
    let render = move |step: Step<'_>| match step {
        Step::Token(t) => {
            sent += 1;
            format!("data: {}\r\n\r\n", chunk(t, None, sent))
        }
        Step::Done => format!("data: {}\r\n\r\n", chunk("", Some(finish), n)),
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
