//! The simulator's own endpoints (`/_sim/*`: stats, reset, run-time config) and the layer in
//! front of every route: request counting, the `x-llm-sim` name header and the bearer-token
//! check.

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
];

/// Counts the request, checks the bearer token (when `api_key` is set; `/_sim/*` is exempt)
/// and tags the response with the server's name.
pub async fn gate(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let mut response = if path.starts_with("/_sim/") {
        next.run(req).await
    } else {
        let endpoint = if ENDPOINTS.contains(&path.as_str()) {
            path.as_str()
        } else {
            "unmatched"
        };
        sim.count_request(endpoint);
        if authorized(&sim, &req) {
            next.run(req).await
        } else {
            let dialect = if path.starts_with("/v1/") {
                Dialect::OpenAi
            } else {
                Dialect::Ollama
            };
            tracing::debug!(%path, "request without the right bearer token");
            ApiError::Unauthorized.into_dialect(dialect).into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&sim.name) {
        response.headers_mut().insert(NAME_HEADER, v);
    }
    response
}

fn authorized(sim: &Sim, req: &Request) -> bool {
    let Some(key) = &sim.api_key else {
        return true;
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token.trim() == key)
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
