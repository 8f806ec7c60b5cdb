//! The simulator's own endpoints (`/_sim/*`: stats, reset, run-time config) and the layer in
//! front of every route: request counting, the `x-llm-sim` name header and the API-key check
//! (a bearer token; Anthropic's `x-api-key`; Gemini's `x-goog-api-key`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{parse_body, ApiError, Dialect};
use crate::state::{Sim, SimStats};
use crate::Overflow;

/// Header naming the server that answered (its `--name`), on every response.
pub const NAME_HEADER: &str = "x-llm-sim";

/// Every routed API path; requests to any other path count as `unmatched`.
pub const ENDPOINTS: &[&str] = &[
    "/",
    "/api/version",
    "/api/tags",
    "/api/ps",
    "/api/show",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/pull",
    "/api/delete",
    "/v1/models",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1beta/models",
    "/http/echo",
    "/http/text",
    "/http/big",
    "/http/slow",
    "/http/flaky",
    "/http/redirect",
];

/// The name a request is counted under: its path, with Gemini's model and action folded
/// (`/v1beta/models/{model}:generateContent`), `/http/status/{code}` as such, `unmatched` for
/// unknown paths.
fn counted_as(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v1beta/models/") {
        return match rest.rsplit_once(':').map(|(_, action)| action) {
            Some("generateContent") => "/v1beta/models/{model}:generateContent",
            Some("streamGenerateContent") => "/v1beta/models/{model}:streamGenerateContent",
            _ => "unmatched",
        };
    }
    if path.starts_with("/http/status/") {
        return "/http/status/{code}";
    }
    if ENDPOINTS.contains(&path) {
        path
    } else {
        "unmatched"
    }
}

/// The dialect a request speaks, from its path (and, for `/v1/models`, which Anthropic and
/// OpenAI share, the `anthropic-version` header).
pub fn dialect_of(req: &Request) -> Dialect {
    let path = req.uri().path();
    if path.starts_with("/v1beta/") {
        Dialect::Gemini
    } else if path == "/v1/messages"
        || (path == "/v1/models" && req.headers().contains_key(ANTHROPIC_VERSION))
    {
        Dialect::Anthropic
    } else if path.starts_with("/v1/") {
        Dialect::OpenAi
    } else {
        Dialect::Ollama
    }
}

/// The header naming Anthropic's API version.
pub const ANTHROPIC_VERSION: &str = "anthropic-version";

/// Counts the request, checks the bearer token (when `api_key` is set; `/_sim/*` is exempt)
/// and tags the response with the server's name.
pub async fn gate(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let mut response = if path.starts_with("/_sim/") {
        next.run(req).await
    } else {
        sim.count_request(counted_as(&path));
        let dialect = dialect_of(&req);
        if authorized(&sim, &req, dialect) {
            next.run(req).await
        } else {
            tracing::debug!(%path, "request without the right API key");
            ApiError::Unauthorized.into_dialect(dialect).into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&sim.name) {
        response.headers_mut().insert(NAME_HEADER, v);
    }
    response
}

/// Whether the request carries the key where its dialect expects it: Anthropic in
/// `x-api-key`, Gemini in `x-goog-api-key`, the others as a bearer token.
fn authorized(sim: &Sim, req: &Request, dialect: Dialect) -> bool {
    let Some(key) = &sim.api_key else {
        return true;
    };
    let header_value = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let given = match dialect {
        Dialect::Anthropic => header_value("x-api-key"),
        Dialect::Gemini => header_value("x-goog-api-key"),
        Dialect::Ollama | Dialect::OpenAi => {
            header_value(header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "))
        }
    };
    given.is_some_and(|token| token.trim() == key)
}

/// `GET /_sim/stats`.
pub async fn stats(State(sim): State<Arc<Sim>>) -> Json<SimStats> {
    Json(sim.stats())
}

/// `POST /_sim/reset`: zeroes the counters; answers the fresh stats.
pub async fn reset(State(sim): State<Arc<Sim>>) -> Json<SimStats> {
    sim.reset();
    tracing::debug!("stats reset");
    Json(sim.stats())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigUpdate {
    latency_ms: Option<f64>,
    tokens_per_second: Option<f64>,
    error_rate: Option<f64>,
}

fn config_view(sim: &Sim) -> Value {
    let k = sim.knobs();
    json!({
        "name": sim.name,
        "models": sim.models().iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        "latency_ms": k.latency.as_secs_f64() * 1000.0,
        "tokens_per_second": k.tokens_per_second,
        "max_concurrent": sim.max_concurrent,
        "overflow": match sim.overflow {
            Overflow::Reject429 => "reject",
            Overflow::Queue => "queue",
        },
        "error_rate": k.error_rate,
        "seed": sim.seed,
        "api_key_required": sim.api_key.is_some(),
    })
}

/// `GET /_sim/config`: the current settings.
pub async fn get_config(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(config_view(&sim))
}

/// `POST /_sim/config` `{"latency_ms"?, "tokens_per_second"?, "error_rate"?}`: changes those
/// knobs for requests admitted from now on; answers the current settings.
pub async fn set_config(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let update: ConfigUpdate = match parse_body(&body) {
        Ok(u) => u,
        Err(e) => return e.into_dialect(Dialect::Ollama).into_response(),
    };
    let latency = match update.latency_ms {
        None => None,
        Some(ms) => match Duration::try_from_secs_f64(ms / 1000.0) {
            Ok(d) => Some(d),
            Err(_) => {
                return ApiError::BadRequest(format!("latency_ms out of range: {ms}"))
                    .into_dialect(Dialect::Ollama)
                    .into_response()
            }
        },
    };
    let k = sim.update_knobs(latency, update.tokens_per_second, update.error_rate);
    tracing::info!(?k, "knobs updated");
    Json(config_view(&sim)).into_response()
}
