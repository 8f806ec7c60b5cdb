//! Google Gemini: `POST /v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` when streaming (server-sent events, one
//! `GenerateContentResponse` per piece); the key goes in `x-goog-api-key`, never in the URL.
//!
//! Mapping from a [`ChatRequest`]: system messages become `systemInstruction`; roles are
//! `user` and `model` (for `assistant`); images become `inlineData` parts before the text;
//! `temperature` and `max_tokens` go into `generationConfig` (`maxOutputTokens`), and
//! `format` asks for `responseMimeType: application/json`. A prompt the API blocks is a
//! request error, not an endpoint failure.

use std::time::Duration;

use serde_json::{json, Value};

use super::{image_part, read_sse, request, send, split_system, status_error};
use super::{CallError, ChatRequest, Completion, Flow, OnToken};
use crate::config::EndpointConfig;

/// One message as a `Content`: inline images, then the text.
fn content(m: &Value) -> Value {
    let role = if m["role"] == "assistant" {
        "model"
    } else {
        "user"
    };
    let mut parts: Vec<Value> = m["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|image| {
                    let (mime_type, data) = image_part(image);
                    json!({ "inlineData": { "mimeType": mime_type, "data": data } })
                })
                .collect()
        })
        .unwrap_or_default();
    let text = m["content"].as_str().unwrap_or_default();
    if !text.is_empty() || parts.is_empty() {
        parts.push(json!({ "text": text }));
    }
    json!({ "role": role, "parts": parts })
}

/// Whether `format` asks for JSON (`json`, or a schema).
fn wants_json(format: &Option<Value>) -> bool {
    match format {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// The request body.
pub fn body(req: &ChatRequest) -> Value {
    let (system, rest) = split_system(&req.messages);
    let contents: Vec<Value> = rest.into_iter().map(content).collect();
    let mut body = json!({ "contents": contents });
    if let Some(s) = system {
        body["systemInstruction"] = json!({ "parts": [{ "text": s }] });
    }
    let mut config = serde_json::Map::new();
    if let Some(t) = req.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(n) = req.max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if wants_json(&req.format) {
        config.insert("responseMimeType".into(), json!("application/json"));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    body
}

/// The model as it goes into the path: without a `models/` prefix, and only characters that
/// cannot change the path (`gemini-2.0-flash`, `gemini-1.5-pro-002`).
pub fn model_path(model: &str) -> Result<&str, CallError> {
    let bare = model.strip_prefix("models/").unwrap_or(model);
    let safe = !bare.is_empty()
        && bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if safe {
        Ok(bare)
    } else {
        Err(CallError::Request(
            400,
            format!("{model:?} is not a Gemini model name (letters, digits, `-`, `.`, `_`)"),
        ))
    }
}

/// One `GenerateContentResponse` (a whole answer or a piece of a stream) into `out`; the
/// usage figures are cumulative, so the latest wins.
fn take(out: &mut Completion, v: &Value, on_token: OnToken<'_>) -> Result<(), CallError> {
    if let Some(error) = v.get("error") {
        let code = error["code"]
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(500);
        return Err(status_error(code, &error.to_string(), &out.model));
    }
    let candidate = &v["candidates"][0];
    if candidate.is_null() {
        if let Some(reason) = v["promptFeedback"]["blockReason"].as_str() {
            return Err(CallError::Request(
                400,
                format!("Gemini blocked the prompt: {reason}"),
            ));
        }
    }
    for part in candidate["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(t) = part["text"].as_str() {
            out.push(t, on_token);
        }
    }
    let usage = &v["usageMetadata"];
    if let Some(n) = usage["promptTokenCount"].as_u64() {
        out.prompt_tokens = n;
    }
    if let Some(n) = usage["candidatesTokenCount"].as_u64() {
        out.completion_tokens = n;
    }
    if let Some(m) = v["modelVersion"].as_str() {
        out.model = m.to_string();
    }
    Ok(())
}

/// A whole (not streamed) answer.
pub fn completion(v: &Value, model: &str) -> Result<Completion, CallError> {
    let mut out = Completion::empty(model);
    take(&mut out, v, None)?;
    Ok(out)
}

/// A chat completion, streamed to `on_token` when given.
pub async fn chat(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    req: &ChatRequest,
    on_token: OnToken<'_>,
    timeout: Duration,
) -> Result<Completion, CallError> {
    let model = model_path(&req.model)?;
    let path = match on_token {
        Some(_) => format!("/v1beta/models/{model}:streamGenerateContent?alt=sse"),
        None => format!("/v1beta/models/{model}:generateContent"),
    };
    let rb = request(http, ep, &path, timeout).json(&body(req));
    let resp = send(rb, &req.model).await?;
    if on_token.is_none() {
        let v: Value = resp
            .json()
            .await
            .map_err(|e| CallError::Endpoint(format!("bad response: {e}")))?;
        return completion(&v, &req.model);
    }
    let mut out = Completion::empty(&req.model);
    read_sse(resp, |v| take(&mut out, v, on_token).map(|()| Flow::More)).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn roles_system_images_and_generation_config_are_mapped() {
        let req = ChatRequest {
            model: "gemini-test".into(),
            messages: vec![
                json!({"role": "system", "content": "be brief"}),
                json!({"role": "user", "content": "what is it", "images": ["data:image/gif;base64,R0lGODlh"]}),
                json!({"role": "assistant", "content": "a gif"}),
                json!({"role": "user", "content": "", "images": ["iVBOR"]}),
            ],
            temperature: Some(0.3),
            max_tokens: Some(64),
            format: Some(json!("json")),
            options: None,
        };
        let b = body(&req);
        assert_eq!(
            b["systemInstruction"],
            json!({"parts": [{"text": "be brief"}]})
        );
        let contents = b["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 3);
        assert_eq!(contents[0]["role"], "user");
        assert_eq!(
            contents[0]["parts"][0],
            json!({"inlineData": {"mimeType": "image/gif", "data": "R0lGODlh"}})
        );
        assert_eq!(contents[0]["parts"][1], json!({"text": "what is it"}));
        assert_eq!(
            contents[1],
            json!({"role": "model", "parts": [{"text": "a gif"}]})
        );
        assert_eq!(
            contents[2]["parts"].as_array().unwrap().len(),
            1,
            "no empty text part"
        );
        assert_eq!(
            b["generationConfig"],
            json!({"temperature": 0.3, "maxOutputTokens": 64, "responseMimeType": "application/json"})
        );
    }

    #[test]
    fn plain_requests_have_no_config_and_model_names_are_checked() {
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![json!({"role": "user", "content": "hi"})],
            ..ChatRequest::default()
        };
        let b = body(&req);
        assert!(b.get("generationConfig").is_none() && b.get("systemInstruction").is_none());
        assert_eq!(
            model_path("models/gemini-2.0-flash").unwrap(),
            "gemini-2.0-flash"
        );
        assert!(model_path("gemini:streamGenerateContent").is_err());
        assert!(model_path("../x").is_err());
    }

    #[test]
    fn answers_streams_and_blocks() {
        let c = completion(
            &json!({"candidates": [{"content": {"parts": [{"text": "echo: "}, {"text": "hi"}], "role": "model"}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}, "modelVersion": "gemini-x"}),
            "m",
        )
        .unwrap();
        assert_eq!(
            (
                c.text.as_str(),
                c.model.as_str(),
                c.prompt_tokens,
                c.completion_tokens
            ),
            ("echo: hi", "gemini-x", 4, 2)
        );
        let seen = Mutex::new(String::new());
        let record = |t: &str| seen.lock().unwrap().push_str(t);
        let mut out = Completion::empty("m");
        for (text, n) in [("echo:", 1), (" hi", 2), ("", 2)] {
            let chunk = json!({"candidates": [{"content": {"parts": [{"text": text}]}}], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": n}});
            take(&mut out, &chunk, Some(&record)).unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), "echo: hi");
        assert_eq!(out.completion_tokens, 2);
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert!(matches!(
            completion(&blocked, "m"),
            Err(CallError::Request(400, _))
        ));
        let busy =
            json!({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}});
        assert!(matches!(
            completion(&busy, "m"),
            Err(CallError::Endpoint(_))
        ));
    }
}
