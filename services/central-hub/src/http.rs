//! The hub's HTTP surface: `GET /health`, `GET /components` and `GET /providers` (JSON).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use gleitzeit_protocol::payloads::{ComponentInfo, HubStatus};
use gleitzeit_protocol::PROTOCOL_VERSION;

use crate::HubState;

pub(crate) fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/components", get(components))
        .route("/providers", get(providers))
        .with_state(state)
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
/// provider last reported them in its heartbeat metadata.
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
