//! Gleitzeit dependency-resolver: readiness and parameter substitution.
//!
//! DAG readiness and substitution arrive with the workflows issue; today it registers and answers pings.
//!
//! Consumes: `ping`, `shutdown`. Emits: replies.

#![forbid(unsafe_code)]

use gleitzeit_hub_client::{
    connect_component, next_envelope, registration, ClientConfig, ClientError,
};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::component_types;
use gleitzeit_runtime::Shutdown;
use serde_json::json;

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `dependency-resolver-<random>`).
    pub component_id: Option<String>,
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub connection failed for good.
    #[error(transparent)]
    Hub(#[from] ClientError),
}

/// Connects to the hub, registers, and serves until `shutdown` fires or the hub asks it to stop.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let ty = component_types::DEPENDENCY_RESOLVER;
    let id = config
        .component_id
        .unwrap_or_else(|| gleitzeit_runtime::default_component_id(ty));
    let reg = registration(ty, id, vec!["dependency_resolution".into()], 0, json!({}));
    let Some((client, mut incoming)) =
        connect_component(ClientConfig::component(config.hub_url, reg), &shutdown).await?
    else {
        return Ok(());
    };
    while let Some(env) = next_envelope(&client, &mut incoming, &shutdown).await {
        let err = GzError::new(
            ErrorCode::UnknownEvent,
            format!("{ty} does not handle {:?}", env.event),
        );
        let _ = client.respond(&env, Err(err));
    }
    client.close().await;
    Ok(())
}
