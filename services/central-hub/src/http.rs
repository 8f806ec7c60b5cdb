//! The hub's HTTP surface: `GET /health`, `GET /components` and `GET /providers` (JSON),
//! which need a key (`Authorization: Bearer KEY`, any role), and `GET /livez`, a bare
//! liveness probe that needs none and tells nothing. `GET /metrics` (Prometheus) is
//! [`crate::metrics`], behind the same key check.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gleitzeit_protocol::payloads::{ComponentInfo, HubStatus};
use gleitzeit_protocol::{ErrorCode, PROTOCOL_VERSION};

use crate::auth::key_from_headers;
use crate::HubState;

pub(crate) fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/components", get(components))
        .route("/providers", get(providers))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ))
        .route("/livez", get(livez))
        .with_state(state.clone())
        .merge(crate::metrics::router(state.clone()))
        .merge(crate::dashboard::router(state))
}

/// Lets a request through when it carries a valid key (every role may read these pages).
pub(crate) async fn require_key(
    State(state): State<Arc<HubState>>,
    req: Request,
    next: Next,
) -> Response {
    let key = key_from_headers(req.headers()).map(str::to_string);
    match state.auth.authenticate(key.as_deref()).await {
        Ok(_) => next.run(req).await,
        Err(err) => {
            tracing::warn!(code = %err.code, path = %req.uri().path(), "refused an HTTP request");
            let status = if err.is(ErrorCode::PermissionDenied) {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::UNAUTHORIZED
            };
            (status, Json(err)).into_response()
        }
    }
}

async fn livez() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub(crate) fn status(state: &HubState) -> HubStatus {
    // One lock at a time: a guard made inside the struct literal lives until its end.
    let components = state.registry().len();
    let peers = state.registry().peers();
    HubStatus {
        status: "ok".into(),
        hub_id: state.config.hub_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        components,
        connections: state.io.sockets().len(),
        messages_routed: state.routed.load(Ordering::Relaxed),
        messages_rejected: state.rejected.load(Ordering::Relaxed),
        mesh: state.mesh.as_ref().map(|m| m.status(peers)),
    }
}

async fn health(State(state): State<Arc<HubState>>) -> Json<HubStatus> {
    Json(status(&state))
}

/// LLM providers and their endpoints (health, load, models, latency, cooldown), as each
/// provider last reported them in its heartbeat metadata (credentials redacted on arrival).
async fn providers(State(state): State<Arc<HubState>>) -> Json<Vec<serde_json::Value>> {
    let list = state
        .registry()
        .list()
        .into_iter()
        .filter(|c| c.registration.capabilities.iter().any(|m| m.starts_with("llm/")))
        .map(|c| {
            let r = c.registration;
            serde_json::json!({
                "provider_id": r.component_id, "host": r.host, "health": c.health,
                "capacity": r.capacity, "load": r.load.max(c.in_flight),
                "strategy": r.metadata.get("strategy"),
                "endpoints": r.metadata.get("endpoints").cloned().unwrap_or_else(|| serde_json::json!([])),
            })
        })
        .collect();
    Json(list)
}

async fn components(State(state): State<Arc<HubState>>) -> Json<Vec<ComponentInfo>> {
    Json(state.registry().list())
}
