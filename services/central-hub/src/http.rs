//! The hub's HTTP surface: `GET /health` and `GET /components` (JSON).

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
        .with_state(state)
}

pub(crate) fn status(state: &HubState) -> HubStatus {
    HubStatus {
        status: "ok".into(),
        hub_id: state.config.hub_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        components: state.registry().len(),
        connections: state.io.sockets().len(),
        messages_routed: state.routed.load(Ordering::Relaxed),
        messages_rejected: state.rejected.load(Ordering::Relaxed),
    }
}

async fn health(State(state): State<Arc<HubState>>) -> Json<HubStatus> {
    Json(status(&state))
}

async fn components(State(state): State<Arc<HubState>>) -> Json<Vec<ComponentInfo>> {
    Json(state.registry().list())
}
