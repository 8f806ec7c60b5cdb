//! Gleitzeit http-provider: serves `http/request` (parameters and result in
//! `protocols/http.yaml`, the whole story in `docs/http.md`).
//!
//! [`request`] reads a task's parameters within the provider's limits; [`secrets`] resolves
//! the environment variables a task names for its secret headers (and keeps their values out
//! of results, errors and logs); [`hosts`] holds the operator's allow and deny lists; [`call`]
//! sends the request and shapes the result or the coded error. Retries are not made here: 5xx,
//! 429, 408, timeouts and connection failures are retryable errors, and the task's `retry:`
//! policy (the queue-manager's) runs the task again.
//!
//! This crate is only the HTTP logic, a [`gleitzeit_component::Provider`]; registration, held
//! tasks, concurrency (`--capacity`, [`Concurrency::Runtime`]), outcomes, cancellation and the
//! drain on shutdown are [`gleitzeit_component::serve`]'s.
//!
//! Consumes: `execute_tasks`, `cancel_tasks`, `ping`, `shutdown`, `metrics`.
//! Emits: `task_outcomes` (to the engine that sent the tasks).

#![forbid(unsafe_code)]

pub mod call;
pub mod hosts;
pub mod request;
pub mod secrets;

use std::sync::Arc;
use std::time::Duration;

use gleitzeit_component::{serve, Concurrency, Provider, ProviderInfo, ServeConfig, TaskContext};
use gleitzeit_hub_client::ClientError;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::component_types;
use gleitzeit_protocol::limits::duration_from_millis_capped;
use gleitzeit_protocol::payloads::ExecuteTask;
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};
use tracing::info;

use crate::call::Client;
use crate::hosts::HostPolicy;
use crate::request::{HttpRequest, Limits};
use crate::secrets::SecretPolicy;

/// The method served.
pub const METHOD: &str = "http/request";

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `http-provider-<random>`).
    pub component_id: Option<String>,
    /// How long running requests may take to finish once shutdown begins.
    pub grace: Duration,
    /// Requests at once.
    pub capacity: u32,
    /// Timeouts and the body size limit.
    pub limits: Limits,
    /// Hosts tasks may reach.
    pub hosts: HostPolicy,
    /// Environment variables tasks may name in `secret_headers`.
    pub secrets: SecretPolicy,
    /// The API key to present (`None`: from the environment, the saved login or the local
    /// suite's key; see `gleitzeit_runtime::credentials`).
    pub api_key: Option<String>,
}

/// The limits when none are given: 30 s per request, at most 300 s, bodies up to 10 MiB.
pub const DEFAULT_LIMITS: Limits = Limits {
    default_timeout: Duration::from_secs(30),
    max_timeout: Duration::from_secs(300),
    max_bytes: 10 << 20,
};

impl Config {
    /// A provider for tests at `hub_url` presenting `api_key`: capacity 8, the default
    /// limits, every host but link-local addresses, no secrets.
    pub fn for_tests(hub_url: &str, api_key: &str) -> Config {
        Config {
            hub_url: hub_url.to_string(),
            component_id: None,
            grace: gleitzeit_component::DEFAULT_GRACE,
            capacity: 8,
            limits: DEFAULT_LIMITS,
            hosts: HostPolicy::default(),
            secrets: SecretPolicy::default(),
            api_key: Some(api_key.to_string()),
        }
    }
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub connection failed for good.
    #[error(transparent)]
    Hub(#[from] ClientError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Connects and serves until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let client = Client::new(config.hosts, config.secrets)?;
    info!(
        capacity = config.capacity,
        rules = %client.policy().describe(),
        secret_env = ?client.secrets().names(),
        "http-provider ready"
    );
    let provider = Arc::new(Http {
        client,
        limits: config.limits,
        capacity: config.capacity.max(1),
    });
    let serve_config = ServeConfig {
        component_id: config.component_id,
        grace: config.grace,
        api_key: config.api_key,
        ..ServeConfig::new(config.hub_url)
    };
    serve(provider, serve_config, shutdown).await?;
    Ok(())
}

/// The provider: the clients and the limits.
struct Http {
    client: Client,
    limits: Limits,
    capacity: u32,
}

impl Provider for Http {
    fn info(&self) -> ProviderInfo {
        let mut metadata = self.client.policy().describe();
        metadata["secret_env"] = json!(self.client.secrets().names());
        metadata["max_bytes"] = json!(self.limits.max_bytes);
        metadata["default_timeout"] = json!(self.limits.default_timeout.as_secs_f64());
        metadata["max_timeout"] = json!(self.limits.max_timeout.as_secs_f64());
        ProviderInfo {
            component_type: component_types::HTTP_PROVIDER.to_string(),
            methods: vec![METHOD.to_string()],
            capacity: self.capacity,
            metadata,
            // Requests wait in the runtime for one of `capacity` places.
            concurrency: Concurrency::Runtime,
        }
    }

    async fn execute(&self, task: ExecuteTask, _ctx: TaskContext) -> Result<Value, GzError> {
        if task.method != METHOD {
            return Err(GzError::new(
                ErrorCode::UnknownMethod,
                format!("http-provider does not serve {}", task.method),
            ));
        }
        let task_timeout = task.timeout_ms.map(duration_from_millis_capped);
        let req = HttpRequest::from_params(&task.params, &self.limits, task_timeout)?;
        self.client.execute(req).await
    }
}
