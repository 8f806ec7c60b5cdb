//! The `llm/*` methods: parameters → requests, endpoint choice with failover, results.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::ExecuteTask;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::api::{self, CallError, ChatRequest, Completion};
use crate::config::EndpointConfig;
use crate::endpoints::{NoEndpoint, Pool};

/// Methods served, with their default models.
pub const METHODS: &[&str] = &[
    "llm/chat",
    "llm/generate",
    "llm/complete",
    "llm/vision",
    "llm/embed",
];

/// What one task asks for.
#[derive(Debug, Clone)]
enum Call {
    Chat(ChatRequest),
    Generate {
        req: ChatRequest,
        prompt: api::Prompt,
    },
    Embed {
        model: String,
        input: Value,
    },
}

impl Call {
    fn model(&self) -> &str {
        match self {
            Call::Chat(r) | Call::Generate { req: r, .. } => &r.model,
            Call::Embed { model, .. } => model,
        }
    }
}

/// Shared by every task of a provider.
pub struct Ctx {
    /// The endpoints.
    pub pool: Arc<Pool>,
    /// HTTP client.
    pub http: reqwest::Client,
    /// This provider's component id (`provider_id` in results).
    pub provider_id: String,
}

fn bad(msg: impl Into<String>) -> GzError {
    GzError::new(ErrorCode::SchemaViolation, msg)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the call from a task's parameters.
fn call_of(task: &ExecuteTask) -> Result<Call, GzError> {
    let p = &task.params;
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let default_model = match task.method.as_str() {
        "llm/vision" => Some("llava:latest"),
        _ => None,
    };
    let model = text("model")
        .or_else(|| default_model.map(str::to_string))
        .ok_or_else(|| bad(format!("{}: `model` is required", task.method)))?;
    let req = |messages: Vec<Value>| ChatRequest {
        model: model.clone(),
        messages,
        temperature: p.get("temperature").and_then(Value::as_f64),
        max_tokens: p.get("max_tokens").and_then(Value::as_u64),
        format: p.get("format").cloned(),
        options: p.get("options").cloned(),
    };
    let appended = match text("file_path") {
        Some(f) => Some(crate::files::text(task, &f)?),
        None => None,
    };
    let mut images: Vec<String> = strings(p.get("images").unwrap_or(&Value::Null));
    if let Some(path) = text("image_path") {
        images.push(crate::files::image(task, &path)?);
    }
    for path in strings(p.get("image_paths").unwrap_or(&Value::Null)) {
        images.push(crate::files::image(task, &path)?);
    }
    match task.method.as_str() {
        "llm/chat" | "llm/vision" => {
            let mut messages: Vec<Value> = match p.get("messages").and_then(Value::as_array) {
                Some(m) if !m.is_empty() => m.clone(),
                _ => match text("prompt") {
                    Some(prompt) => vec![json!({ "role": "user", "content": prompt })],
                    None => {
                        return Err(bad(format!(
                            "{}: `messages` (or `prompt`) is required",
                            task.method
                        )))
                    }
                },
            };
            let last_user = messages.iter().rposition(|m| m["role"] == "user");
            if let Some(extra) = appended {
                match last_user {
                    Some(i) => {
                        let content = messages[i]["content"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        messages[i]["content"] = json!(format!("{content}\n\n{extra}"));
                    }
                    None => messages.push(json!({ "role": "user", "content": extra })),
                }
            }
            if !images.is_empty() {
                // Images go with the last user message (an object by its role).
                let i = match messages.iter().rposition(|m| m["role"] == "user") {
                    Some(i) => i,
                    None => {
                        messages.push(json!({ "role": "user", "content": "" }));
                        messages.len() - 1
                    }
                };
                let mut all = strings(&messages[i]["images"]);
                all.extend(images);
                messages[i]["images"] = json!(all);
            }
            Ok(Call::Chat(req(messages)))
        }
        "llm/generate" | "llm/complete" => {
            let mut prompt = text("prompt")
                .ok_or_else(|| bad(format!("{}: `prompt` is required", task.method)))?;
            if let Some(extra) = appended {
                prompt = format!("{prompt}\n\n{extra}");
            }
            Ok(Call::Generate {
                req: req(Vec::new()),
                prompt: api::Prompt {
                    text: prompt,
                    system: text("system"),
                    images,
                },
            })
        }
        "llm/embed" => {
            let input = p
                .get("input")
                .cloned()
                .ok_or_else(|| bad("llm/embed: `input` is required"))?;
            if !(input.is_string()
                || input
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string)))
            {
                return Err(bad(
                    "llm/embed: `input` must be a string or a list of strings",
                ));
            }
            Ok(Call::Embed { model, input })
        }
        other => Err(GzError::new(
            ErrorCode::UnknownMethod,
            format!("ollama-provider does not serve {other}"),
        )),
    }
}

/// Runs one task: picks endpoints until one answers, fails over on endpoint trouble.
pub async fn execute(
    ctx: &Ctx,
    task: &ExecuteTask,
    on_token: api::OnToken<'_>,
) -> Result<Value, GzError> {
    let call = call_of(task)?;
    let tags = strings(task.params.get("tags").unwrap_or(&Value::Null));
    let model = call.model().to_string();
    let pinned = task.params.get("provider").and_then(Value::as_str);
    let started = Instant::now();
    // Endpoints already tried, and those this task may not use at all.
    let mut tried: HashSet<usize> = excluded(&ctx.pool, &call, pinned)?;
    let mut last_failure: Option<String> = None;
    // Endpoints that refused their key; `other_failure` when any failed otherwise.
    let mut refused_keys: Vec<String> = Vec::new();
    let mut other_failure = false;
    // The last endpoint tried did not have the model.
    let mut model_missing = false;
    let mut pulled = false;
    loop {
        let freed = ctx.pool.slot_freed();
        let slot = match ctx.pool.try_acquire(&model, &tags, &tried) {
            Ok(s) => s,
            Err(NoEndpoint::Busy) => {
                // Woken by a release; the bound lets ended cooldowns be noticed too.
                let _ = tokio::time::timeout(Duration::from_millis(250), freed).await;
                continue;
            }
            Err(NoEndpoint::UnknownModel) if ctx.pool.config.auto_pull && !pulled => {
                pulled = true;
                pull_somewhere(ctx, &model, &tags).await?;
                continue;
            }
            Err(NoEndpoint::UnknownModel) => return Err(model_not_found(&model)),
            Err(NoEndpoint::Unavailable) if model_missing => return Err(model_not_found(&model)),
            Err(NoEndpoint::Unavailable) if !refused_keys.is_empty() && !other_failure => {
                return Err(key_refused(format!(
                    "every endpoint tried refused its API key: {}",
                    refused_keys.join("; ")
                )))
            }
            Err(NoEndpoint::NoTags) => {
                return Err(GzError::new(
                    ErrorCode::NoEndpoint,
                    format!("no endpoint has the tags {tags:?}"),
                )
                .with_retryable(false)
                .with_hint(
                    "check the endpoints' `tags` in providers/ollama.yaml (`gz providers`)",
                ))
            }
            Err(NoEndpoint::Unavailable) => {
                return Err(match last_failure {
                    Some(f) => GzError::new(
                        ErrorCode::OllamaUnreachable,
                        format!("every endpoint serving {model} failed; last error: {f}"),
                    ),
                    None => GzError::new(
                        ErrorCode::NoEndpoint,
                        match pinned {
                            Some(p) => format!(
                                "no healthy endpoint of `provider: {p}` serves {model} right now"
                            ),
                            None => format!("no healthy endpoint serves {model} right now"),
                        },
                    ),
                })
            }
        };
        let ep = ctx.pool.endpoint(slot.index).clone();
        let timeout = Duration::from_secs_f64(ep.timeout);
        debug!(endpoint = %ep.name, model = %model, task = %task.task_id, "calling endpoint");
        let result = run_call(ctx, &ep, &call, on_token, timeout).await;
        match result {
            Ok(value) => {
                ctx.pool.release(slot, None);
                return Ok(shape(ctx, &ep.name, &model, value, started.elapsed()));
            }
            Err(CallError::Endpoint(e)) => {
                warn!(endpoint = %ep.name, error = %gleitzeit_protocol::identity::redact_text(&e.to_string()), task = %task.task_id, "endpoint failed; trying another");
                tried.insert(slot.index);
                ctx.pool.release(slot, Some(e.clone()));
                last_failure = Some(format!("{}: {e}", ep.name));
                other_failure = true;
                model_missing = false;
            }
            Err(CallError::Auth(code, body)) => {
                let e = format!(
                    "HTTP {code}: {}",
                    gleitzeit_protocol::identity::redact_text(&body)
                );
                warn!(endpoint = %ep.name, status = code, task = %task.task_id, "endpoint refused its API key; trying another");
                tried.insert(slot.index);
                ctx.pool
                    .release(slot, Some(format!("API key refused ({e})")));
                refused_keys.push(format!("{} ({e})", ep.name));
                last_failure = Some(format!("{}: API key refused ({e})", ep.name));
                model_missing = false;
            }
            Err(CallError::ModelNotFound(m)) => {
                let index = slot.index;
                ctx.pool.release(slot, None);
                if ctx.pool.config.auto_pull && !pulled {
                    pulled = true;
                    info!(endpoint = %ep.name, model = %m, "pulling a missing model");
                    api::pull(&ctx.http, &ep, &m)
                        .await
                        .map_err(|e| call_error(&m, e))?;
                    ctx.pool.model_added(index, &m);
                    continue;
                }
                tried.insert(index);
                if last_failure.is_none() {
                    last_failure = Some(format!("{}: model {m} not found", ep.name));
                }
                // When no other endpoint is left after this, the model is missing (GZ2011).
                model_missing = true;
            }
            Err(e @ CallError::Request(..)) => {
                ctx.pool.release(slot, None);
                return Err(call_error(&model, e));
            }
        }
    }
}

/// The endpoints a task may not use: those `provider:` does not name (by endpoint name, or
/// else by kind), and those whose kind cannot serve the call (embeddings on Anthropic and
/// Gemini endpoints).
fn excluded(pool: &Pool, call: &Call, pinned: Option<&str>) -> Result<HashSet<usize>, GzError> {
    let endpoints = &pool.config.endpoints;
    let by_name = pinned.is_some_and(|p| endpoints.iter().any(|e| e.name == p));
    let chosen = |e: &EndpointConfig| match pinned {
        None => true,
        Some(p) if by_name => e.name == p,
        Some(p) => e.kind.as_str() == p,
    };
    let listing = || {
        endpoints
            .iter()
            .map(|e| format!("{} ({})", e.name, e.kind.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(p) = pinned.filter(|_| !endpoints.iter().any(chosen)) {
        return Err(GzError::new(
            ErrorCode::NoEndpoint,
            format!("`provider: {p}` names no endpoint of this provider; its endpoints: {}", listing()),
        )
        .with_retryable(false)
        .with_hint("give an endpoint's name or a kind (ollama, openai, anthropic, gemini), or leave `provider` out (`gz providers` lists the endpoints)"));
    }
    let embeds = matches!(call, Call::Embed { .. });
    let out: HashSet<usize> = (0..endpoints.len())
        .filter(|&i| !chosen(&endpoints[i]) || (embeds && !endpoints[i].kind.embeds()))
        .collect();
    if out.len() == endpoints.len() {
        return Err(GzError::new(
            ErrorCode::NoEndpoint,
            format!("no endpoint that may serve this task serves embeddings (anthropic and gemini endpoints do not); endpoints: {}", listing()),
        )
        .with_retryable(false));
    }
    Ok(out)
}

async fn pull_somewhere(ctx: &Ctx, model: &str, tags: &[String]) -> Result<(), GzError> {
    let index = (0..ctx.pool.config.endpoints.len())
        .find(|&i| {
            let e = ctx.pool.endpoint(i);
            e.kind == crate::config::Kind::Ollama && tags.iter().all(|t| e.tags.contains(t))
        })
        .ok_or_else(|| model_not_found(model))?;
    let ep = ctx.pool.endpoint(index).clone();
    info!(endpoint = %ep.name, model, "pulling a missing model");
    api::pull(&ctx.http, &ep, model)
        .await
        .map_err(|e| call_error(model, e))?;
    ctx.pool.model_added(index, model);
    Ok(())
}

fn model_not_found(model: &str) -> GzError {
    GzError::new(
        ErrorCode::ModelNotFound,
        format!("model {model} is not available on any endpoint"),
    )
    .with_hint(format!(
        "ollama pull {model}  (or set auto_pull: true in providers/ollama.yaml)"
    ))
}

/// GZ4001, not retryable: a refused key does not get better by waiting.
fn key_refused(message: String) -> GzError {
    GzError::new(ErrorCode::AuthInvalid, message)
        .with_retryable(false)
        .with_hint("set the environment variable named by the endpoint's `api_key_env` (providers/ollama.yaml) to a valid key where the ollama-provider runs")
}

fn call_error(model: &str, e: CallError) -> GzError {
    match e {
        CallError::Auth(code, body) => key_refused(format!(
            "the endpoint refused its API key (HTTP {code}): {}",
            gleitzeit_protocol::identity::redact_text(&body)
        )),
        CallError::Endpoint(m) => GzError::new(
            ErrorCode::OllamaUnreachable,
            gleitzeit_protocol::identity::redact_text(&m),
        ),
        CallError::ModelNotFound(m) => model_not_found(&m),
        CallError::Request(code, body) => GzError::new(
            ErrorCode::TaskFailed,
            format!("endpoint refused the request for {model} (HTTP {code}): {body}"),
        )
        .with_retryable(false),
    }
}

enum Answer {
    Text(Completion),
    Vectors(Vec<Value>, String),
}

async fn run_call(
    ctx: &Ctx,
    ep: &crate::config::EndpointConfig,
    call: &Call,
    on_token: api::OnToken<'_>,
    timeout: Duration,
) -> Result<Answer, CallError> {
    match call {
        Call::Chat(req) => api::chat(&ctx.http, ep, req, on_token, timeout)
            .await
            .map(Answer::Text),
        Call::Generate { req, prompt } => {
            api::generate(&ctx.http, ep, req, prompt, on_token, timeout)
                .await
                .map(Answer::Text)
        }
        Call::Embed { model, input } => api::embed(&ctx.http, ep, model, input, timeout)
            .await
            .map(|(v, m)| Answer::Vectors(v, m)),
    }
}

/// The result object (the original's shape plus the endpoint).
fn shape(ctx: &Ctx, endpoint: &str, model: &str, answer: Answer, took: Duration) -> Value {
    match answer {
        Answer::Text(c) => json!({
            "response": c.text, "content": c.text, "role": "assistant",
            "model": if c.model.is_empty() { model.to_string() } else { c.model },
            "provider_id": ctx.provider_id, "endpoint": endpoint,
            "tokens_used": c.prompt_tokens + c.completion_tokens,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_duration": took.as_secs_f64(),
        }),
        Answer::Vectors(v, m) => json!({
            "embeddings": v, "embedding": v.first().cloned().unwrap_or(Value::Null),
            "dimensions": v.first().and_then(Value::as_array).map(Vec::len).unwrap_or(0),
            "model": m, "provider_id": ctx.provider_id, "endpoint": endpoint,
            "total_duration": took.as_secs_f64(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn task(method: &str, params: Value) -> ExecuteTask {
        ExecuteTask {
            workflow_id: "w".into(),
            task_id: "t".into(),
            attempt: 1,
            method: method.into(),
            params,
            timeout_ms: None,
            base_dir: Some(std::env::temp_dir().display().to_string()),
            files: Vec::new(),
        }
    }

    #[test]
    fn file_path_is_appended_to_the_last_user_message() {
        let name = format!("gz-llm-test-{}.txt", std::process::id());
        std::fs::write(std::env::temp_dir().join(&name), "FILE BODY").unwrap();
        let c = call_of(&task("llm/chat", json!({"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}], "file_path": name}))).unwrap();
        let Call::Chat(r) = c else { panic!("chat") };
        assert_eq!(r.messages[1]["content"], "q\n\nFILE BODY");
    }

    #[test]
    fn vision_takes_every_image_and_defaults_the_model() {
        let name = format!("gz-img-test-{}.png", std::process::id());
        std::fs::write(std::env::temp_dir().join(&name), [1u8, 2, 3]).unwrap();
        let c = call_of(&task("llm/vision", json!({"prompt": "what is this", "images": ["AAAA"], "image_paths": [name.clone(), name]}))).unwrap();
        let Call::Chat(r) = c else { panic!("chat") };
        assert_eq!(r.model, "llava:latest");
        assert_eq!(r.messages[0]["images"].as_array().unwrap().len(), 3);
        assert_eq!(r.messages[0]["images"][1], "AQID");
    }

    #[test]
    fn images_without_a_user_message_get_one_of_their_own() {
        // Not objects at all: nothing to index into, and nothing panics.
        let c = call_of(&task(
            "llm/vision",
            json!({"messages": ["just text", 5], "images": ["AAAA"]}),
        ))
        .unwrap();
        let Call::Chat(r) = c else { panic!("chat") };
        let last = r.messages.last().unwrap();
        assert_eq!(last["role"], "user");
        assert_eq!(last["images"], json!(["AAAA"]));
    }

    #[test]
    fn provider_pins_by_name_then_kind_and_embeddings_skip_hosted_kinds() {
        let config = crate::config::ProviderConfig::from_yaml(
            "endpoints:\n  - { name: local, url: \"http://a\" }\n  - { name: claude, url: \"http://b\", kind: anthropic }\n  - { name: gemini, url: \"http://c\", kind: openai }\n  - { name: g2, url: \"http://d\", kind: gemini }\n",
        )
        .unwrap();
        let pool = Pool::new(config);
        let chat = call_of(&task(
            "llm/chat",
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        ))
        .unwrap();
        let embed = call_of(&task("llm/embed", json!({"model": "m", "input": "x"}))).unwrap();
        let set = |v: &[usize]| v.iter().copied().collect::<HashSet<usize>>();
        assert!(excluded(&pool, &chat, None).unwrap().is_empty());
        assert_eq!(
            excluded(&pool, &chat, Some("claude")).unwrap(),
            set(&[0, 2, 3])
        );
        assert_eq!(
            excluded(&pool, &chat, Some("gemini")).unwrap(),
            set(&[0, 1, 3]),
            "an endpoint's name wins over a kind"
        );
        assert_eq!(
            excluded(&pool, &chat, Some("anthropic")).unwrap(),
            set(&[0, 2, 3])
        );
        assert_eq!(excluded(&pool, &embed, None).unwrap(), set(&[1, 3]));
        let unknown = excluded(&pool, &chat, Some("nope")).unwrap_err();
        assert_eq!(unknown.code, "GZ2012");
        assert!(!unknown.retryable);
        assert!(
            unknown.message.contains("claude (anthropic)"),
            "{}",
            unknown.message
        );
        assert_eq!(
            excluded(&pool, &embed, Some("claude")).unwrap_err().code,
            "GZ2012"
        );
    }

    #[test]
    fn missing_fields_are_schema_errors() {
        assert_eq!(
            call_of(&task("llm/chat", json!({"messages": []})))
                .unwrap_err()
                .code,
            "GZ7002"
        );
        assert_eq!(
            call_of(&task("llm/generate", json!({"model": "m"})))
                .unwrap_err()
                .code,
            "GZ7002"
        );
        assert_eq!(
            call_of(&task("llm/embed", json!({"model": "m", "input": 3})))
                .unwrap_err()
                .code,
            "GZ7002"
        );
        assert!(matches!(
            call_of(&task("llm/complete", json!({"model": "m", "prompt": "p"}))),
            Ok(Call::Generate { .. })
        ));
    }
}
