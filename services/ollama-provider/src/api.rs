//! HTTP calls to one endpoint, in its dialect: Ollama (`/api/*`, NDJSON streaming),
//! OpenAI-compatible (`/v1/*`, server-sent events), Anthropic's Messages API ([`anthropic`])
//! or Gemini's generateContent ([`gemini`]). Each dialect maps the same [`ChatRequest`] to
//! its wire format and its answer back to a [`Completion`]; statuses map to [`CallError`]s the
//! same way for all (`methods` decides what to do about them).

pub mod anthropic;
pub mod gemini;

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{EndpointConfig, Kind};

/// How a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The endpoint is the problem (unreachable, 5xx, 429, timeout): try another one.
    Endpoint(String),
    /// The endpoint does not have the model.
    ModelNotFound(String),
    /// The endpoint refused its API key (401, 403, Gemini's `API_KEY_INVALID`): try another
    /// one; when none is left the task fails without a retry (its key will not get better).
    Auth(u16, String),
    /// The request itself was refused (other 4xx): another endpoint would refuse it too.
    Request(u16, String),
}

/// A finished completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// The model that answered.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// What to generate.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// Messages `{role, content, images?}` (images as base64 strings).
    pub messages: Vec<Value>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Token limit.
    pub max_tokens: Option<u64>,
    /// Ollama `format` (e.g. `json`).
    pub format: Option<Value>,
    /// Extra Ollama options.
    pub options: Option<Value>,
}

/// Receives streamed text as it arrives.
pub type OnToken<'a> = Option<&'a (dyn Fn(&str) + Send + Sync)>;

/// The version of Anthropic's API the requests are written for (`anthropic-version`).
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// `rb` with the endpoint's credentials in its dialect's place: a bearer token (Ollama,
/// OpenAI), `x-api-key` and `anthropic-version` (Anthropic), `x-goog-api-key` (Gemini). The
/// key is read from the environment now and marked sensitive.
fn authorized(rb: reqwest::RequestBuilder, ep: &EndpointConfig) -> reqwest::RequestBuilder {
    let rb = match ep.kind {
        Kind::Anthropic => rb.header("anthropic-version", ANTHROPIC_VERSION),
        Kind::Ollama | Kind::Openai | Kind::Gemini => rb,
    };
    let Some(key) = ep
        .api_key_env
        .as_deref()
        .and_then(|v| std::env::var(v).ok())
    else {
        return rb;
    };
    let (name, value) = match ep.kind {
        Kind::Ollama | Kind::Openai => ("authorization", format!("Bearer {key}")),
        Kind::Anthropic => ("x-api-key", key),
        Kind::Gemini => ("x-goog-api-key", key),
    };
    match reqwest::header::HeaderValue::from_str(&value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            rb.header(name, v)
        }
        // Not a header value: sent without, and the endpoint's 401 says why.
        Err(_) => rb,
    }
}

fn request(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    path: &str,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    authorized(http.post(format!("{}{path}", ep.url)).timeout(timeout), ep)
}

async fn send(rb: reqwest::RequestBuilder, model: &str) -> Result<reqwest::Response, CallError> {
    let resp = rb
        .send()
        .await
        .map_err(|e| CallError::Endpoint(describe(&e)))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(status_error(status.as_u16(), &body, model))
}

/// What an unsuccessful status means, in every dialect.
pub(crate) fn status_error(code: u16, body: &str, model: &str) -> CallError {
    let lower = body.to_ascii_lowercase();
    if code == 404 && (lower.contains("not found") || lower.contains("not_found")) {
        return CallError::ModelNotFound(model.to_string());
    }
    // Gemini answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID.
    if code == 401 || code == 403 || (code == 400 && body.contains("API_KEY_INVALID")) {
        return CallError::Auth(code, body.chars().take(200).collect());
    }
    if code == 429 || code >= 500 {
        return CallError::Endpoint(format!(
            "HTTP {code}: {}",
            body.chars().take(200).collect::<String>()
        ));
    }
    CallError::Request(code, body.chars().take(500).collect())
}

/// The media type of a base64 image, from its first bytes (PNG when unknown), and the data
/// without a `data:…;base64,` prefix.
pub(crate) fn image_part(image: &str) -> (&'static str, &str) {
    let data = match image.split_once(";base64,") {
        Some((head, data)) if head.starts_with("data:") => data,
        _ => image,
    };
    let kind = if data.starts_with("/9j/") {
        "image/jpeg"
    } else if data.starts_with("R0lGOD") {
        "image/gif"
    } else if data.starts_with("UklGR") {
        "image/webp"
    } else {
        "image/png"
    };
    (kind, data)
}

/// The system messages' text (joined by blank lines), and the other messages.
pub(crate) fn split_system(messages: &[Value]) -> (Option<String>, Vec<&Value>) {
    let system: Vec<&str> = messages
        .iter()
        .filter(|m| m["role"] == "system")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let rest = messages.iter().filter(|m| m["role"] != "system").collect();
    ((!system.is_empty()).then(|| system.join("\n\n")), rest)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("connection failed: {e}")
    } else {
        e.to_string()
    }
}

/// Ollama's `options`: the request's own (when an object), with `temperature` and
/// `max_tokens` (`num_predict`) set on top.
fn ollama_options(req: &ChatRequest) -> Value {
    let mut options = match &req.options {
        Some(o @ Value::Object(_)) => o.clone(),
        _ => json!({}),
    };
    if let Some(t) = req.temperature {
        options["temperature"] = json!(t);
    }
    if let Some(n) = req.max_tokens {
        options["num_predict"] = json!(n);
    }
    options
}

/// A chat completion.
pub async fn chat(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    req: &ChatRequest,
    on_token: OnToken<'_>,
    timeout: Duration,
) -> Result<Completion, CallError> {
    let stream = on_token.is_some();
    match ep.kind {
        Kind::Ollama => {
            let options = ollama_options(req);
            let mut body = json!({ "model": req.model, "messages": req.messages, "stream": stream, "options": options });
            if let Some(f) = &req.format {
                body["format"] = f.clone();
            }
            let resp = send(
                request(http, ep, "/api/chat", timeout).json(&body),
                &req.model,
            )
            .await?;
            read_ollama(resp, &req.model, on_token, |v| {
                v["message"]["content"].as_str().map(str::to_string)
            })
            .await
        }
        Kind::Openai => {
            let mut body = json!({ "model": req.model, "messages": openai_messages(&req.messages), "stream": stream });
            if let Some(t) = req.temperature {
                body["temperature"] = json!(t);
            }
            if let Some(n) = req.max_tokens {
                body["max_tokens"] = json!(n);
            }
            let resp = send(
                request(http, ep, "/v1/chat/completions", timeout).json(&body),
                &req.model,
            )
            .await?;
            if stream {
                read_openai_stream(resp, &req.model, on_token).await
            } else {
                let v: Value = resp
                    .json()
                    .await
                    .map_err(|e| CallError::Endpoint(format!("bad response: {e}")))?;
                Ok(Completion {
                    text: v["choices"][0]["message"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    model: v["model"].as_str().unwrap_or(&req.model).to_string(),
                    prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
                })
            }
        }
        Kind::Anthropic => anthropic::chat(http, ep, req, on_token, timeout).await,
        Kind::Gemini => gemini::chat(http, ep, req, on_token, timeout).await,
    }
}

/// OpenAI wants images as content parts.
fn openai_messages(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| match m.get("images").and_then(Value::as_array) {
            Some(images) if !images.is_empty() => {
                let mut parts = vec![json!({ "type": "text", "text": m["content"] })];
                for img in images {
                    let data = img.as_str().unwrap_or_default();
                    parts.push(json!({ "type": "image_url", "image_url": { "url": format!("data:image/png;base64,{data}") } }));
                }
                json!({ "role": m["role"], "content": parts })
            }
            _ => json!({ "role": m["role"], "content": m["content"] }),
        })
        .collect()
}

/// The prompt of a completion.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The prompt text.
    pub text: String,
    /// An optional system prompt.
    pub system: Option<String>,
    /// Images (base64).
    pub images: Vec<String>,
}

/// A prompt completion (`/api/generate`; the other kinds get it as a chat).
pub async fn generate(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    req: &ChatRequest,
    prompt: &Prompt,
    on_token: OnToken<'_>,
    timeout: Duration,
) -> Result<Completion, CallError> {
    let (system, images) = (prompt.system.as_deref(), &prompt.images);
    let prompt = prompt.text.as_str();
    match ep.kind {
        Kind::Ollama => {
            let options = ollama_options(req);
            let mut body = json!({ "model": req.model, "prompt": prompt, "stream": on_token.is_some(), "options": options });
            if let Some(s) = system {
                body["system"] = json!(s);
            }
            if !images.is_empty() {
                body["images"] = json!(images);
            }
            let resp = send(
                request(http, ep, "/api/generate", timeout).json(&body),
                &req.model,
            )
            .await?;
            read_ollama(resp, &req.model, on_token, |v| {
                v["response"].as_str().map(str::to_string)
            })
            .await
        }
        Kind::Openai | Kind::Anthropic | Kind::Gemini => {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(json!({ "role": "system", "content": s }));
            }
            let mut user = json!({ "role": "user", "content": prompt });
            if !images.is_empty() {
                user["images"] = json!(images);
            }
            messages.push(user);
            let chat_req = ChatRequest {
                messages,
                ..req.clone()
            };
            chat(http, ep, &chat_req, on_token, timeout).await
        }
    }
}

/// Embeddings for one text or a list.
pub async fn embed(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    model: &str,
    input: &Value,
    timeout: Duration,
) -> Result<(Vec<Value>, String), CallError> {
    let (path, body) = match ep.kind {
        Kind::Ollama => ("/api/embed", json!({ "model": model, "input": input })),
        Kind::Openai => ("/v1/embeddings", json!({ "model": model, "input": input })),
        Kind::Anthropic | Kind::Gemini => {
            return Err(CallError::Request(
                400,
                format!("{} endpoints do not serve embeddings", ep.kind.as_str()),
            ))
        }
    };
    let resp = send(request(http, ep, path, timeout).json(&body), model).await?;
    let v: Value = resp
        .json()
        .await
        .map_err(|e| CallError::Endpoint(format!("bad response: {e}")))?;
    let vectors = match ep.kind {
        Kind::Ollama | Kind::Anthropic | Kind::Gemini => {
            v["embeddings"].as_array().cloned().unwrap_or_default()
        }
        Kind::Openai => v["data"]
            .as_array()
            .map(|d| d.iter().map(|e| e["embedding"].clone()).collect())
            .unwrap_or_default(),
    };
    Ok((vectors, v["model"].as_str().unwrap_or(model).to_string()))
}

/// Models served and (Ollama) loaded right now.
pub async fn health(
    http: &reqwest::Client,
    ep: &EndpointConfig,
) -> Result<(Vec<String>, Vec<String>), String> {
    let timeout = Duration::from_secs(5);
    let get = |path: &str| authorized(http.get(format!("{}{path}", ep.url)).timeout(timeout), ep);
    let names = |v: &Value, list: &str, key: &str| -> Vec<String> {
        v[list]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m[key].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let fetch = |path: &'static str| async move {
        let resp = get(path).send().await.map_err(|e| describe(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {} from {path}", resp.status().as_u16()));
        }
        resp.json::<Value>().await.map_err(|e| e.to_string())
    };
    match ep.kind {
        Kind::Ollama => {
            let tags = fetch("/api/tags").await?;
            let loaded = fetch("/api/ps")
                .await
                .map(|v| names(&v, "models", "name"))
                .unwrap_or_default();
            Ok((names(&tags, "models", "name"), loaded))
        }
        Kind::Openai => {
            let models = fetch("/v1/models").await?;
            Ok((names(&models, "data", "id"), Vec::new()))
        }
        Kind::Anthropic => {
            let models = fetch("/v1/models?limit=1000").await?;
            Ok((names(&models, "data", "id"), Vec::new()))
        }
        Kind::Gemini => {
            let models = fetch("/v1beta/models?pageSize=1000").await?;
            let listed = names(&models, "models", "name");
            let bare = listed
                .iter()
                .map(|m| m.strip_prefix("models/").unwrap_or(m).to_string())
                .collect();
            Ok((bare, Vec::new()))
        }
    }
}

/// Pulls a model onto an Ollama endpoint.
pub async fn pull(
    http: &reqwest::Client,
    ep: &EndpointConfig,
    model: &str,
) -> Result<(), CallError> {
    if ep.kind != Kind::Ollama {
        return Err(CallError::ModelNotFound(model.to_string()));
    }
    let body = json!({ "model": model, "stream": false });
    let resp = send(
        request(http, ep, "/api/pull", Duration::from_secs(3600)).json(&body),
        model,
    )
    .await?;
    let v: Value = resp
        .json()
        .await
        .map_err(|e| CallError::Endpoint(format!("bad pull response: {e}")))?;
    match v["status"].as_str() {
        Some("success") => Ok(()),
        _ => Err(CallError::Request(
            500,
            format!("pull did not succeed: {v}"),
        )),
    }
}

/// Reads an Ollama answer, streamed (NDJSON) or not.
async fn read_ollama(
    mut resp: reqwest::Response,
    model: &str,
    on_token: OnToken<'_>,
    text_of: impl Fn(&Value) -> Option<String>,
) -> Result<Completion, CallError> {
    let mut out = Completion {
        text: String::new(),
        model: model.to_string(),
        prompt_tokens: 0,
        completion_tokens: 0,
    };
    let finish = |v: &Value, out: &mut Completion| {
        out.prompt_tokens = v["prompt_eval_count"].as_u64().unwrap_or(out.prompt_tokens);
        out.completion_tokens = v["eval_count"].as_u64().unwrap_or(out.completion_tokens);
        if let Some(m) = v["model"].as_str() {
            out.model = m.to_string();
        }
    };
    let Some(on_token) = on_token else {
        let v: Value = resp
            .json()
            .await
            .map_err(|e| CallError::Endpoint(format!("bad response: {e}")))?;
        out.text = text_of(&v).unwrap_or_default();
        finish(&v, &mut out);
        return Ok(out);
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| CallError::Endpoint(format!("stream broke: {}", describe(&e))))?;
        let Some(chunk) = chunk else { break };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(err) = v["error"].as_str() {
                return Err(CallError::Endpoint(err.to_string()));
            }
            if let Some(t) = text_of(&v).filter(|t| !t.is_empty()) {
                on_token(&t);
                out.text.push_str(&t);
            }
            if v["done"].as_bool() == Some(true) {
                finish(&v, &mut out);
            }
        }
    }
    Ok(out)
}

/// What a stream reader does after an event.
pub(crate) enum Flow {
    /// Read on.
    More,
    /// The answer is complete.
    Done,
}

/// Reads a server-sent-events stream: `on_data` gets each `data:` payload that is JSON, in
/// order (event names and comments are skipped), until it says [`Flow::Done`], `data: [DONE]`
/// arrives or the stream ends.
pub(crate) async fn read_sse(
    mut resp: reqwest::Response,
    mut on_data: impl FnMut(&Value) -> Result<Flow, CallError>,
) -> Result<(), CallError> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| CallError::Endpoint(format!("stream broke: {}", describe(&e))))?;
        let Some(chunk) = chunk else { return Ok(()) };
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                return Ok(());
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Flow::Done = on_data(&v)? {
                return Ok(());
            }
        }
    }
}

impl Completion {
    /// Nothing generated yet by `model`.
    pub(crate) fn empty(model: &str) -> Completion {
        Completion {
            text: String::new(),
            model: model.to_string(),
            prompt_tokens: 0,
            completion_tokens: 0,
        }
    }

    /// Streamed text: handed to `on_token` and kept.
    pub(crate) fn push(&mut self, text: &str, on_token: OnToken<'_>) {
        if text.is_empty() {
            return;
        }
        if let Some(f) = on_token {
            f(text);
        }
        self.text.push_str(text);
    }
}

/// Reads an OpenAI stream (`choices[0].delta.content`, usage when the server sends it).
async fn read_openai_stream(
    resp: reqwest::Response,
    model: &str,
    on_token: OnToken<'_>,
) -> Result<Completion, CallError> {
    let mut out = Completion::empty(model);
    read_sse(resp, |v| {
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            out.push(t, on_token);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            out.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0);
            out.completion_tokens = u["completion_tokens"].as_u64().unwrap_or(0);
        }
        if let Some(m) = v["model"].as_str() {
            out.model = m.to_string();
        }
        Ok(Flow::More)
    })
    .await?;
    if out.completion_tokens == 0 {
        out.completion_tokens = out.text.split_whitespace().count() as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_mean_the_same_in_every_dialect() {
        assert!(matches!(
            status_error(401, "invalid x-api-key", "m"),
            CallError::Auth(401, _)
        ));
        assert!(matches!(
            status_error(403, "", "m"),
            CallError::Auth(403, _)
        ));
        let gemini_bad_key = r#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#;
        assert!(matches!(
            status_error(400, gemini_bad_key, "m"),
            CallError::Auth(400, _)
        ));
        let anthropic_missing =
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}"#;
        assert_eq!(
            status_error(404, anthropic_missing, "claude-x"),
            CallError::ModelNotFound("claude-x".into())
        );
        assert!(matches!(
            status_error(404, r#"{"error":{"status":"NOT_FOUND"}}"#, "g"),
            CallError::ModelNotFound(_)
        ));
        assert!(matches!(
            status_error(529, "overloaded", "m"),
            CallError::Endpoint(_)
        ));
        assert!(matches!(
            status_error(429, "slow down", "m"),
            CallError::Endpoint(_)
        ));
        assert!(matches!(
            status_error(400, "bad", "m"),
            CallError::Request(400, _)
        ));
    }

    #[test]
    fn images_carry_their_media_type_and_lose_data_url_prefixes() {
        assert_eq!(image_part("iVBORw0KGgo"), ("image/png", "iVBORw0KGgo"));
        assert_eq!(image_part("/9j/4AAQ"), ("image/jpeg", "/9j/4AAQ"));
        assert_eq!(
            image_part("data:image/webp;base64,UklGRh4A"),
            ("image/webp", "UklGRh4A")
        );
        assert_eq!(image_part("AAAA").0, "image/png");
    }

    #[test]
    fn options_that_are_not_an_object_are_replaced_not_indexed() {
        let req = ChatRequest {
            options: Some(json!("fast please")),
            temperature: Some(0.5),
            max_tokens: Some(7),
            ..ChatRequest::default()
        };
        assert_eq!(
            ollama_options(&req),
            json!({"temperature": 0.5, "num_predict": 7})
        );
        let req = ChatRequest {
            options: Some(json!({"top_k": 3})),
            ..ChatRequest::default()
        };
        assert_eq!(ollama_options(&req), json!({"top_k": 3}));
    }
}
