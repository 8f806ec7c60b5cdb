//! Ollama's native API: `/api/tags`, `/api/version`, `/api/ps`, `/api/show`, `/api/chat`,
//! `/api/generate`, `/api/embed`, `/api/embeddings`, `/api/pull`, `/api/delete`.
//!
//! `stream` defaults to true, as in Ollama; streamed answers are NDJSON.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{parse_body, ApiError, Dialect, DialectError};
use crate::state::{Model, Sim, KEEP_ALIVE};
use crate::stream::{paced_body, Plan, Step};
use crate::text;

/// The version `/api/version` reports.
pub const OLLAMA_VERSION: &str = "0.9.0";

type ApiResult = Result<Response, DialectError>;

fn ollama(e: ApiError) -> DialectError {
    e.into_dialect(Dialect::Ollama)
}

/// Sampling options; only `num_predict` changes the answer (it caps the tokens).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Options {
    #[allow(dead_code)]
    temperature: Option<f64>,
    num_predict: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    stream: Option<bool>,
    #[serde(default)]
    options: Options,
    #[serde(default)]
    format: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
    stream: Option<bool>,
    #[serde(default)]
    options: Options,
    #[serde(default)]
    format: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct EmbedRequest {
    model: String,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    #[serde(default)]
    prompt: String,
}

#[derive(Debug, Deserialize)]
struct ModelRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    stream: Option<bool>,
}

impl ModelRequest {
    fn model_name(&self) -> Result<&str, ApiError> {
        self.model
            .as_deref()
            .or(self.name.as_deref())
            .filter(|m| !m.trim().is_empty())
            .ok_or_else(|| ApiError::BadRequest("model is required".to_string()))
    }
}

/// True when a `format` asks for JSON output (`"json"` or a JSON schema).
fn wants_json(format: &Option<Value>) -> bool {
    match format {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn now_string() -> String {
    text::rfc3339(SystemTime::now())
}

/// A request key for seeded failure draws: endpoint and exact body.
pub(crate) fn request_key(endpoint: &str, body: &[u8]) -> u64 {
    text::fnv1a(endpoint.as_bytes()) ^ text::splitmix64(text::fnv1a(body))
}

fn resolve(sim: &Sim, requested: &str) -> Result<String, ApiError> {
    sim.resolve_model(requested)
        .ok_or_else(|| ApiError::ModelNotFound(requested.to_string()))
}

fn ndjson(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn line(v: &Value) -> String {
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// `details` of a model, derived from its name.
fn details(name: &str) -> Value {
    let base = name.rsplit('/').next().unwrap_or(name);
    let family: String = base
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_lowercase();
    let family = if family.is_empty() {
        "llama".to_string()
    } else {
        family
    };
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    })
}

fn model_size(name: &str) -> u64 {
    1_000_000_000 + text::fnv1a(name.as_bytes()) % 3_000_000_000
}

fn capabilities(name: &str) -> Vec<&'static str> {
    if name.contains("embed") {
        vec!["embedding"]
    } else if name.contains("llava") || name.contains("vision") {
        vec!["completion", "vision"]
    } else {
        vec!["completion"]
    }
}

fn model_entry(m: &Model) -> Value {
    json!({
        "name": m.name,
        "model": m.name,
        "modified_at": text::rfc3339(m.modified_at),
        "size": model_size(&m.name),
        "digest": text::digest_hex(&m.name),
        "details": details(&m.name),
    })
}

/// `GET /` — Ollama's liveness answer.
pub async fn root() -> &'static str {
    "Ollama is running"
}

/// `GET /api/version`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": OLLAMA_VERSION }))
}

/// `GET /api/tags`: the served models.
pub async fn tags(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let models: Vec<Value> = sim.models().iter().map(model_entry).collect();
    Json(json!({ "models": models }))
}

/// `GET /api/ps`: models used within the keep-alive window.
pub async fn ps(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let models: Vec<Value> = sim
        .loaded_models()
        .iter()
        .map(|(m, used)| {
            let size = model_size(&m.name);
            json!({
                "name": m.name,
                "model": m.name,
                "size": size,
                "digest": text::digest_hex(&m.name),
                "details": details(&m.name),
                "expires_at": text::rfc3339(*used + KEEP_ALIVE),
                "size_vram": size,
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

/// `POST /api/show`: details of one model.
pub async fn show(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: ModelRequest = parse_body(&body).map_err(ollama)?;
    let name = resolve(&sim, req.model_name().map_err(ollama)?).map_err(ollama)?;
    let d = details(&name);
    let modified = sim
        .models()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| m.modified_at)
        .unwrap_or_else(SystemTime::now);
    Ok(Json(json!({
        "modelfile": format!("# Modelfile generated by gleitzeit-llm-sim\nFROM {name}\n"),
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": d,
        "model_info": { "general.architecture": d["family"] },
        "capabilities": capabilities(&name),
        "modified_at": text::rfc3339(modified),
    }))
    .into_response())
}

/// `POST /api/pull`: adds the model to the served list.
pub async fn pull(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: ModelRequest = parse_body(&body).map_err(ollama)?;
    let name = sim.add_model(req.model_name().map_err(ollama)?);
    tracing::info!(model = %name, "model pulled");
    if !req.stream.unwrap_or(true) {
        return Ok(Json(json!({ "status": "success" })).into_response());
    }
    let digest = text::digest_hex(&name);
    let size = model_size(&name);
    let lines = [
        json!({ "status": "pulling manifest" }),
        json!({
            "status": format!("pulling {}", &digest[..12]),
            "digest": format!("sha256:{digest}"),
            "total": size,
            "completed": size,
        }),
        json!({ "status": "verifying sha256 digest" }),
        json!({ "status": "writing manifest" }),
        json!({ "status": "success" }),
    ];
    let body: String = lines.iter().map(line).collect();
    Ok(ndjson(Body::from(body)))
}

/// `DELETE /api/delete`: removes a model.
pub async fn delete(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: ModelRequest = parse_body(&body).map_err(ollama)?;
    let requested = req.model_name().map_err(ollama)?;
    if sim.remove_model(requested) {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ollama(ApiError::ModelNotFound(requested.to_string())))
    }
}

/// The answer to an empty chat or generate request: Ollama loads the model and reports
/// `done_reason: "load"`.
fn load_answer(sim: &Sim, requested: &str, served: &str, field: &str) -> Response {
    sim.touch_model(served);
    let mut obj = Map::new();
    obj.insert("model".into(), json!(requested));
    obj.insert("created_at".into(), json!(now_string()));
    if field == "message" {
        obj.insert(
            "message".into(),
            json!({ "role": "assistant", "content": "" }),
        );
    } else {
        obj.insert(field.into(), json!(""));
    }
    obj.insert("done_reason".into(), json!("load"));
    obj.insert("done".into(), json!(true));
    Json(Value::Object(obj)).into_response()
}

/// What chat and generate share once the request is understood.
struct Generation {
    /// The model name as requested (echoed in answers).
    model: String,
    /// The served model name.
    served: String,
    reply: String,
    prompt_words: u64,
    num_predict: Option<i64>,
    stream: bool,
    images: u64,
    /// `message` (chat) or `response` (generate).
    chat: bool,
}

fn content_value(chat: bool, content: &str) -> (&'static str, Value) {
    if chat {
        (
            "message",
            json!({ "role": "assistant", "content": content }),
        )
    } else {
        ("response", json!(content))
    }
}

async fn run_generation(sim: Arc<Sim>, endpoint: &str, body: &[u8], g: Generation) -> ApiResult {
    let received = Instant::now();
    let mut tokens = text::tokenize(&g.reply);
    let truncated = text::truncate_tokens(&mut tokens, g.num_predict);
    let done_reason = if truncated { "length" } else { "stop" };
    let slot = sim
        .admit(request_key(endpoint, body), &g.served, g.images)
        .await
        .map_err(ollama)?;
    let plan = Plan::new(&sim.knobs());
    let n = tokens.len();
    let chat = g.chat;
    let model = g.model.clone();
    let final_fields = move |content_key: &'static str, content: Value| -> Value {
        let mut obj = Map::new();
        obj.insert("model".into(), json!(g.model));
        obj.insert("created_at".into(), json!(now_string()));
        obj.insert(content_key.into(), content);
        obj.insert("done".into(), json!(true));
        obj.insert("done_reason".into(), json!(done_reason));
        obj.insert("total_duration".into(), json!(ns(received.elapsed())));
        obj.insert("load_duration".into(), json!(0));
        obj.insert("prompt_eval_count".into(), json!(g.prompt_words));
        obj.insert("prompt_eval_duration".into(), json!(ns(plan.latency())));
        obj.insert("eval_count".into(), json!(n));
        obj.insert("eval_duration".into(), json!(ns(plan.eval_duration(n))));
        Value::Object(obj)
    };
    if !g.stream {
        plan.finish(n).await;
        drop(slot);
        let (key, content) = content_value(chat, &tokens.concat());
        return Ok(Json(final_fields(key, content)).into_response());
    }
    let render = move |step: Step<'_>| match step {
        Step::Token(t) => {
            let (key, content) = content_value(chat, t);
            let mut obj = Map::new();
            obj.insert("model".into(), json!(model));
            obj.insert("created_at".into(), json!(now_string()));
            obj.insert(key.into(), content);
            obj.insert("done".into(), json!(false));
            line(&Value::Object(obj))
        }
        Step::Done => {
            let (key, content) = content_value(chat, "");
            line(&final_fields(key, content))
        }
    };
    Ok(ndjson(paced_body(tokens, plan, slot, render)))
}

/// `POST /api/chat`: answers `echo: <last user message>`.
pub async fn chat(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: ChatRequest = parse_body(&body).map_err(ollama)?;
    let served = resolve(&sim, &req.model).map_err(ollama)?;
    if req.messages.is_empty() {
        return Ok(load_answer(&sim, &req.model, &served, "message"));
    }
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .and_then(|m| m.content.as_deref())
        .unwrap_or("");
    let g = Generation {
        reply: text::reply_for(last_user, wants_json(&req.format)),
        prompt_words: req
            .messages
            .iter()
            .filter_map(|m| m.content.as_deref())
            .map(text::word_count)
            .sum(),
        images: req
            .messages
            .iter()
            .map(|m| m.images.as_ref().map_or(0, |i| i.len() as u64))
            .sum(),
        num_predict: req.options.num_predict,
        stream: req.stream.unwrap_or(true),
        model: req.model,
        served,
        chat: true,
    };
    run_generation(sim, "/api/chat", &body, g).await
}

/// `POST /api/generate`: answers `echo: <prompt>`.
pub async fn generate(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: GenerateRequest = parse_body(&body).map_err(ollama)?;
    let served = resolve(&sim, &req.model).map_err(ollama)?;
    let prompt = req.prompt.unwrap_or_default();
    if prompt.is_empty() {
        return Ok(load_answer(&sim, &req.model, &served, "response"));
    }
    let g = Generation {
        reply: text::reply_for(&prompt, wants_json(&req.format)),
        prompt_words: text::word_count(&prompt) + req.system.as_deref().map_or(0, text::word_count),
        images: req.images.as_ref().map_or(0, |i| i.len() as u64),
        num_predict: req.options.num_predict,
        stream: req.stream.unwrap_or(true),
        model: req.model,
        served,
        chat: false,
    };
    run_generation(sim, "/api/generate", &body, g).await
}

/// The texts of an embedding `input`: a string or an array of strings (missing = none).
pub(crate) fn embed_inputs(input: Option<Value>) -> Result<Vec<String>, ApiError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::BadRequest(
                    "input must be a string or an array of strings".to_string(),
                )),
            })
            .collect(),
        Some(_) => Err(ApiError::BadRequest(
            "input must be a string or an array of strings".to_string(),
        )),
    }
}

/// Admits an embedding request and waits the latency; returns when the vectors are due.
pub(crate) async fn embedding_pause(
    sim: &Arc<Sim>,
    endpoint: &str,
    body: &[u8],
    served: &str,
) -> Result<(), ApiError> {
    let slot = sim.admit(request_key(endpoint, body), served, 0).await?;
    Plan::new(&sim.knobs()).finish(0).await;
    drop(slot);
    Ok(())
}

/// `POST /api/embed`: one deterministic unit vector per input text.
pub async fn embed(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let received = Instant::now();
    let req: EmbedRequest = parse_body(&body).map_err(ollama)?;
    let served = resolve(&sim, &req.model).map_err(ollama)?;
    let inputs = embed_inputs(req.input).map_err(ollama)?;
    embedding_pause(&sim, "/api/embed", &body, &served)
        .await
        .map_err(ollama)?;
    let embeddings: Vec<Vec<f32>> = inputs.iter().map(|t| text::embedding(t)).collect();
    let words: u64 = inputs.iter().map(|t| text::word_count(t)).sum();
    Ok(Json(json!({
        "model": req.model,
        "embeddings": embeddings,
        "total_duration": ns(received.elapsed()),
        "load_duration": 0,
        "prompt_eval_count": words,
    }))
    .into_response())
}

/// `POST /api/embeddings` (Ollama's older endpoint): `{"embedding":[...]}` for `prompt`.
pub async fn embeddings(State(sim): State<Arc<Sim>>, body: Bytes) -> ApiResult {
    let req: EmbeddingsRequest = parse_body(&body).map_err(ollama)?;
    let served = resolve(&sim, &req.model).map_err(ollama)?;
    embedding_pause(&sim, "/api/embeddings", &body, &served)
        .await
        .map_err(ollama)?;
    Ok(Json(json!({ "embedding": text::embedding(&req.prompt) })).into_response())
}
