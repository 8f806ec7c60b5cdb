//! Anthropic's Messages API: `POST /v1/messages` with `x-api-key` and `anthropic-version`;
//! the answer as JSON, or when streaming as server-sent events (`message_start` with the input
//! tokens, `content_block_delta` text, `message_delta` with the output tokens, `message_stop`).
//!
//! Mapping from a [`ChatRequest`]: system messages become the top-level `system`; images
//! become base64 `image` blocks before the message's text; `max_tokens`, which the API
//! requires, defaults to [`DEFAULT_MAX_TOKENS`]; `temperature` is capped at 1, the API's
//! maximum. `format` and `options` have no Anthropic counterpart and are not sent.

use std::time::Duration;

use serde_json::{json, Value};

use super::{image_part, read_sse, request, send, split_system, status_error};
use super::{CallError, ChatRequest, Completion, Flow, OnToken};
use crate::config::EndpointConfig;

/// `max_tokens` of a request that names none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// One message: its text as is, or image blocks and then the text.
fn message(m: &Value) -> Value {
    let role = if m["role"] == "assistant" {
        "assistant"
    } else {
        "user"
    };
    let text = m["content"].as_str().unwrap_or_default();
    let images: Vec<&str> = m["images"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if images.is_empty() {
        return json!({ "role": role, "content": text });
    }
    let mut blocks: Vec<Value> = images
        .iter()
        .map(|image| {
            let (media_type, data) = image_part(image);
            json!({ "type": "image", "source": { "type": "base64", "media_type": media_type, "data": data } })
        })
        .collect();
    // The API refuses empty text blocks.
    if !text.is_empty() {
        blocks.push(json!({ "type": "text", "text": text }));
    }
    json!({ "role": role, "content": blocks })
}

/// The request body.
pub fn body(req: &ChatRequest, stream: bool) -> Value {
    let (system, rest) = split_system(&req.messages);
    let messages: Vec<Value> = rest.into_iter().map(message).collect();
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": stream,
    });
    if let Some(s) = system {
        body["system"] = json!(s);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t.clamp(0.0, 1.0));
    }
    body
}

/// A whole (not streamed) answer.
pub fn completion(v: &Value, model: &str) -> Completion {
    let text = v["content"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect::<String>()
        })
        .unwrap_or_default();
    Completion {
        text,
        model: v["model"].as_str().unwrap_or(model).to_string(),
        prompt_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
        completion_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
    }
}

/// An `error` event of a stream, as the status it stands for would be.
fn stream_error(error: &Value, model: &str) -> CallError {
    let message = error["message"].as_str().unwrap_or("stream error");
    let status = match error["type"].as_str() {
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("invalid_request_error") => 400,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    };
    status_error(status, &format!("{} {message}", error["type"]), model)
}

/// One event of a stream into `out`.
pub(crate) fn on_event(
    out: &mut Completion,
    v: &Value,
    on_token: OnToken<'_>,
) -> Result<Flow, CallError> {
    match v["type"].as_str() {
        Some("message_start") => {
            let m = &v["message"];
            if let Some(model) = m["model"].as_str() {
                out.model = model.to_string();
            }
            out.prompt_tokens = m["usage"]["input_tokens"].as_u64().unwrap_or(0);
            out.completion_tokens = m["usage"]["output_tokens"].as_u64().unwrap_or(0);
        }
        Some("content_block_delta") if v["delta"]["type"] == "text_delta" => {
            out.push(v["delta"]["text"].as_str().unwrap_or_default(), on_token);
        }
        Some("message_delta") => {
            if let Some(n) = v["usage"]["output_tokens"].as_u64() {
                out.completion_tokens = n;
            }
        }
        Some("message_stop") => return Ok(Flow::Done),
        Some("error") => return Err(stream_error(&v["error"], &out.model)),
        _ => {}
    }
    Ok(Flow::More)
}

/// A chat completion, streamed to `on_token` when given.
pub async fn chat(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    req: &ChatRequest,
    on_token: OnToken<'_>,
    timeout: Duration,
) -> Result<Completion, CallError> {
    let stream = on_token.is_some();
    let rb = request(http, ep, "/v1/messages", timeout).json(&body(req, stream));
    let resp = send(rb, &req.model).await?;
    if !stream {
        let v: Value = resp
            .json()
            .await
            .map_err(|e| CallError::Endpoint(format!("bad response: {e}")))?;
        return Ok(completion(&v, &req.model));
    }
    let mut out = Completion::empty(&req.model);
    read_sse(resp, |v| on_event(&mut out, v, on_token)).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    fn request_of(messages: Value) -> ChatRequest {
        ChatRequest {
            model: "claude-test".into(),
            messages: messages.as_array().unwrap().clone(),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn system_messages_become_the_system_field_and_images_blocks() {
        let req = ChatRequest {
            temperature: Some(1.7),
            max_tokens: Some(50),
            ..request_of(json!([
                {"role": "system", "content": "be brief"},
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "look", "images": ["/9j/AAAA", "iVBORw0KGgo"]},
                {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "sure?"},
            ]))
        };
        let b = body(&req, true);
        assert_eq!(b["system"], "be brief\n\nbe kind");
        assert_eq!(b["max_tokens"], 50);
        assert_eq!(b["temperature"], 1.0, "capped at the API's maximum");
        assert_eq!(b["stream"], true);
        let messages = b["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        let blocks = messages[0]["content"].as_array().unwrap();
        assert_eq!(blocks[0]["source"]["media_type"], "image/jpeg");
        assert_eq!(blocks[1]["source"]["media_type"], "image/png");
        assert_eq!(blocks[2], json!({"type": "text", "text": "look"}));
        assert_eq!(
            messages[1],
            json!({"role": "assistant", "content": "a cat"})
        );
    }

    #[test]
    fn max_tokens_defaults_and_no_system_means_none() {
        let b = body(
            &request_of(json!([{"role": "user", "content": "hi"}])),
            false,
        );
        assert_eq!(b["max_tokens"], DEFAULT_MAX_TOKENS);
        assert!(b.get("system").is_none());
        assert!(b.get("temperature").is_none());
    }

    #[test]
    fn answers_give_text_and_token_counts() {
        let c = completion(
            &json!({"model": "claude-x", "content": [{"type": "text", "text": "a"}, {"type": "tool_use"}, {"type": "text", "text": "b"}],
                "usage": {"input_tokens": 7, "output_tokens": 2}}),
            "m",
        );
        assert_eq!(
            (
                c.text.as_str(),
                c.model.as_str(),
                c.prompt_tokens,
                c.completion_tokens
            ),
            ("ab", "claude-x", 7, 2)
        );
    }

    #[test]
    fn a_stream_yields_deltas_and_usage_and_stops_at_message_stop() {
        let seen = Mutex::new(Vec::new());
        let record = |t: &str| seen.lock().unwrap().push(t.to_string());
        let on_token: OnToken<'_> = Some(&record);
        let mut out = Completion::empty("m");
        let events = [
            json!({"type": "message_start", "message": {"model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 1}}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "echo:"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " hi"}}),
            json!({"type": "message_delta", "usage": {"output_tokens": 2}}),
        ];
        for e in &events {
            assert!(matches!(on_event(&mut out, e, on_token), Ok(Flow::More)));
        }
        assert!(matches!(
            on_event(&mut out, &json!({"type": "message_stop"}), on_token),
            Ok(Flow::Done)
        ));
        assert_eq!(out.text, "echo: hi");
        assert_eq!(*seen.lock().unwrap(), ["echo:", " hi"]);
        assert_eq!((out.prompt_tokens, out.completion_tokens), (5, 2));
        let overloaded = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        assert!(matches!(
            on_event(&mut out, &overloaded, None),
            Err(CallError::Endpoint(_))
        ));
        let auth = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        assert!(matches!(
            on_event(&mut out, &auth, None),
            Err(CallError::Auth(401, _))
        ));
    }
}
