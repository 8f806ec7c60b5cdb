//! Gleitzeit ollama-provider: serves `llm/chat`, `llm/generate` (`llm/complete`),
//! `llm/vision` and `llm/embed` over many Ollama, OpenAI-compatible, Anthropic and Gemini
//! endpoints.
//!
//! [`config`] reads the endpoints; [`endpoints`] keeps their live state and picks one per
//! request (strategy, models, tags, slots, cooldown); [`api`] speaks the HTTP dialects (the
//! hosted ones in [`api::anthropic`] and [`api::gemini`]); [`methods`] turns task parameters
//! into calls (a `provider:` parameter pins an endpoint or kind), fails over between endpoints
//! and shapes the results. The provider advertises the sum of its endpoints' slots as capacity and
//! publishes the endpoints' state in its heartbeat metadata (the hub serves it at
//! `GET /providers`; `gz providers` prints it).
//!
//! This crate is only the Ollama logic, a [`gleitzeit_component::Provider`]; the hub side
//! (registration, held tasks, outcomes, cancellation, the drain on shutdown) is
//! [`gleitzeit_component::serve`].
//!
//! Consumes: `execute_tasks`, `cancel_tasks`, `ping`, `shutdown`, `metrics` (the
//! endpoints' figures: [`endpoints::Pool::metrics`]).
//! Emits: `task_outcomes` (to the engine), `task_progress` (streamed text, to the rooms
//! `events` and `workflow:<id>`, for tasks with `stream: true`).

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod endpoints;
pub mod files;
pub mod methods;

use std::sync::Arc;
use std::time::Duration;

use gleitzeit_component::{serve, Concurrency, Provider, ProviderInfo, ServeConfig, TaskContext};
use gleitzeit_hub_client::ClientError;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types, rooms};
use gleitzeit_protocol::limits::duration_from_millis_capped;
use gleitzeit_protocol::payloads::ExecuteTask;
use gleitzeit_protocol::replies::TaskProgress;
use gleitzeit_protocol::Target;
use gleitzeit_runtime::Shutdown;
use serde_json::Value;
use tracing::{info, warn};

use crate::config::ProviderConfig;
use crate::endpoints::Pool;
use crate::methods::{Ctx, METHODS};

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `ollama-provider-<random>`).
    pub component_id: Option<String>,
    /// How long running tasks may take to finish once shutdown begins.
    pub grace: std::time::Duration,
    /// Endpoints and routing.
    pub provider: ProviderConfig,
    /// The API key to present (`None`: from the environment, the saved login or the local
    /// suite's key; see `gleitzeit_runtime::credentials`).
    pub api_key: Option<String>,
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub connection failed for good.
    #[error(transparent)]
    Hub(#[from] ClientError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}

/// Checks every endpoint once and records the result.
async fn health_round(pool: &Pool, http: &reqwest::Client) {
    let checks: Vec<_> = (0..pool.config.endpoints.len())
        .map(|i| {
            let (http, ep) = (http.clone(), pool.endpoint(i).clone());
            tokio::spawn(async move { api::health(&http, &ep).await })
        })
        .collect();
    for (i, check) in checks.into_iter().enumerate() {
        let result = check.await.unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = &result {
            warn!(endpoint = %pool.endpoint(i).name, error = %gleitzeit_protocol::identity::redact_text(&e.to_string()), "health check failed");
        }
        pool.health_checked(i, result);
    }
}

/// Checks endpoints, connects, and serves until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| ServiceError::Http(e.to_string()))?;
    let pool = Arc::new(Pool::new(config.provider));
    health_round(&pool, &http).await;
    let id = config.component_id.unwrap_or_else(|| {
        gleitzeit_runtime::default_component_id(component_types::OLLAMA_PROVIDER)
    });
    info!(endpoints = pool.config.endpoints.len(), capacity = pool.config.capacity(), strategy = ?pool.config.strategy, "endpoints checked");
    let provider = Arc::new(Ollama {
        ctx: Arc::new(Ctx {
            pool,
            http,
            provider_id: id.clone(),
        }),
    });
    let serve_config = ServeConfig {
        component_id: Some(id),
        grace: config.grace,
        api_key: config.api_key,
        ..ServeConfig::new(config.hub_url)
    };
    serve(provider, serve_config, shutdown).await?;
    Ok(())
}

/// The provider: the endpoints and how to call them.
struct Ollama {
    ctx: Arc<Ctx>,
}

impl Provider for Ollama {
    fn info(&self) -> ProviderInfo {
        let pool = &self.ctx.pool;
        ProviderInfo {
            component_type: component_types::OLLAMA_PROVIDER.to_string(),
            methods: METHODS.iter().map(|m| m.to_string()).collect(),
            capacity: pool.config.capacity(),
            metadata: pool.snapshot(),
            // Tasks wait for a slot of an endpoint that serves their model.
            concurrency: Concurrency::Provider,
        }
    }

    async fn execute(&self, task: ExecuteTask, ctx: TaskContext) -> Result<Value, GzError> {
        let stream = task.params.get("stream").and_then(Value::as_bool) == Some(true);
        let room = format!("{},{}", rooms::EVENTS, rooms::workflow(&task.workflow_id));
        let (wf, tid, attempt) = (task.workflow_id.clone(), task.task_id.clone(), task.attempt);
        let on_token = move |text: &str| {
            let progress = TaskProgress {
                workflow_id: wf.clone(),
                task_id: tid.clone(),
                attempt,
                text: text.to_string(),
            };
            if let Ok(payload) = serde_json::to_value(progress) {
                ctx.emit(Target::Room(room.clone()), events::TASK_PROGRESS, payload);
            }
        };
        let on_token_ref: api::OnToken<'_> = if stream { Some(&on_token) } else { None };
        // A timeout from outside is capped (it only ever becomes a Duration).
        let work = methods::execute(&self.ctx, &task, on_token_ref);
        match task.timeout_ms.map(duration_from_millis_capped) {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(GzError::new(
                    ErrorCode::TaskTimeout,
                    format!("no answer within {:.1}s", limit.as_secs_f64()),
                )),
            },
            None => work.await,
        }
    }

    fn load(&self) -> Option<u32> {
        Some(self.ctx.pool.load())
    }

    fn metrics(&self) -> Vec<gleitzeit_protocol::metrics::MetricFamily> {
        self.ctx.pool.metrics()
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Duration::try_from_secs_f64(self.ctx.pool.config.health_interval).ok()
    }

    async fn refresh(&self) -> Option<Value> {
        health_round(&self.ctx.pool, &self.ctx.http).await;
        Some(self.ctx.pool.snapshot())
    }
}

impl Config {
    /// A provider for tests with these endpoints, presenting `api_key` to the hub at
    /// `hub_url`.
    pub fn for_tests(hub_url: &str, api_key: &str, provider: ProviderConfig) -> Config {
        Config {
            hub_url: hub_url.to_string(),
            component_id: None,
            grace: gleitzeit_component::DEFAULT_GRACE,
            provider,
            api_key: Some(api_key.to_string()),
        }
    }
}
