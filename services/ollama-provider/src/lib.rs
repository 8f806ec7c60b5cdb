//! Gleitzeit ollama-provider: serves `llm/chat`, `llm/generate` (`llm/complete`),
//! `llm/vision` and `llm/embed` over many Ollama and OpenAI-compatible endpoints.
//!
//! [`config`] reads the endpoints; [`endpoints`] keeps their live state and picks one per
//! request (strategy, models, tags, slots, cooldown); [`api`] speaks both HTTP dialects;
//! [`methods`] turns task parameters into calls, fails over between endpoints and shapes
//! the results. The provider advertises the sum of its endpoints' slots as capacity and
//! publishes the endpoints' state in its heartbeat metadata (the hub serves it at
//! `GET /providers`; `gz providers` prints it).
//!
//! Consumes: `execute_tasks`, `cancel_tasks`, `ping`, `shutdown`.
//! Emits: `task_outcomes` (to the engine), `task_progress` (streamed text, to the rooms
//! `events` and `workflow:<id>`, for tasks with `stream: true`).

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod endpoints;
pub mod methods;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gleitzeit_hub_client::{
    connect_component, next_envelope, outcome_sender, registration, spawn_held_reports,
    ClientConfig, ClientError, Holdings, HubClient,
};
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types, rooms};
use gleitzeit_protocol::limits::{cap_outcome, duration_from_millis_capped, MAX_OUTCOME_BYTES};
use gleitzeit_protocol::payloads::{CancelTasks, ExecuteTask, ExecuteTasks, TaskOutcome, TaskRef};
use gleitzeit_protocol::Target;
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
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
    /// Endpoints and routing.
    pub provider: ProviderConfig,
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

/// Held tasks (waiting for a slot or running), with a way to stop each.
type Running = Arc<Mutex<Holdings<AbortHandle>>>;

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
    let ty = component_types::OLLAMA_PROVIDER;
    let id = config
        .component_id
        .unwrap_or_else(|| gleitzeit_runtime::default_component_id(ty));
    let capacity = pool.config.capacity();
    let reg = registration(
        ty,
        id.clone(),
        METHODS.iter().map(|m| m.to_string()).collect(),
        capacity,
        pool.snapshot(),
    );
    let Some((client, mut incoming)) =
        connect_component(ClientConfig::component(config.hub_url, reg), &shutdown).await?
    else {
        return Ok(());
    };
    info!(endpoints = pool.config.endpoints.len(), capacity, strategy = ?pool.config.strategy, "ollama-provider ready");
    let ctx = Arc::new(Ctx {
        pool: pool.clone(),
        http: http.clone(),
        provider_id: client.id().to_string(),
    });
    let health = tokio::spawn(health_loop(pool.clone(), http, client.clone()));
    let running: Running = Arc::new(Mutex::new(Holdings::default()));
    let reports = spawn_held_reports(&client, {
        let running = running.clone();
        move || lock(&running).report()
    });
    let done = outcome_sender(&client);
    while let Some(env) = next_envelope(&client, &mut incoming, &shutdown).await {
        match env.event.as_str() {
            events::EXECUTE_TASKS => match env.payload_as::<ExecuteTasks>() {
                Ok(batch) => {
                    for task in batch.tasks {
                        start_task(
                            &ctx,
                            &client,
                            &running,
                            task,
                            env.source.clone(),
                            done.clone(),
                        );
                    }
                }
                Err(e) => warn!(error = %e, "bad execute_tasks payload"),
            },
            events::CANCEL_TASKS => match env.payload_as::<CancelTasks>() {
                Ok(c) => {
                    let mut held = lock(&running);
                    for t in c.tasks {
                        if let Some(abort) = held.take(&t) {
                            abort.abort();
                        }
                    }
                }
                Err(e) => warn!(error = %e, "bad cancel_tasks payload"),
            },
            other => {
                let err = GzError::new(
                    ErrorCode::UnknownEvent,
                    format!("ollama-provider does not handle {other:?}"),
                );
                let _ = client.respond(&env, Err(err));
            }
        }
    }
    health.abort();
    reports.abort();
    client.close().await;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn health_loop(pool: Arc<Pool>, http: reqwest::Client, client: HubClient) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(pool.config.health_interval));
    loop {
        tick.tick().await;
        health_round(&pool, &http).await;
        client.set_metadata(pool.snapshot());
        client.set_load(pool.load());
    }
}

fn start_task(
    ctx: &Arc<Ctx>,
    client: &HubClient,
    running: &Running,
    task: ExecuteTask,
    reply_to: String,
    done: mpsc::UnboundedSender<(String, TaskOutcome)>,
) {
    let key = TaskRef {
        workflow_id: task.workflow_id.clone(),
        task_id: task.task_id.clone(),
    };
    let engine = reply_to.clone();
    let (ctx, client, running2) = (ctx.clone(), client.clone(), running.clone());
    let key2 = key.clone();
    let attempt = task.attempt;
    let handle = tokio::spawn(async move {
        let started_at = now_millis();
        let stream = task.params.get("stream").and_then(Value::as_bool) == Some(true);
        let progress_client = client.clone();
        let room = format!("{},{}", rooms::EVENTS, rooms::workflow(&task.workflow_id));
        let (wf, tid, attempt) = (task.workflow_id.clone(), task.task_id.clone(), task.attempt);
        let on_token = move |text: &str| {
            let payload =
                json!({ "workflow_id": wf, "task_id": tid, "attempt": attempt, "text": text });
            let _ =
                progress_client.emit(Target::Room(room.clone()), events::TASK_PROGRESS, payload);
        };
        let on_token_ref: api::OnToken<'_> = if stream { Some(&on_token) } else { None };
        // A panic while serving the task fails it (GZ8001) instead of leaving it held
        // forever; a timeout from outside is capped (it only ever becomes a Duration).
        let work = async {
            gleitzeit_runtime::catch_panic(methods::execute(&ctx, &task, on_token_ref))
                .await
                .unwrap_or_else(|panic| {
                    warn!(task = %task.task_id, %panic, "serving the task panicked");
                    Err(GzError::new(
                        ErrorCode::Internal,
                        format!("the provider failed on this task: {panic}"),
                    ))
                })
        };
        let result = match task.timeout_ms.map(duration_from_millis_capped) {
            Some(limit) => match tokio::time::timeout(limit, work).await {
                Ok(r) => r,
                Err(_) => Err(GzError::new(
                    ErrorCode::TaskTimeout,
                    format!("no answer within {:.1}s", limit.as_secs_f64()),
                )),
            },
            None => work.await,
        };
        client.set_load(ctx.pool.load());
        lock(&running2).finish(&key2, attempt);
        let outcome = cap_outcome(
            TaskOutcome::finished(
                task.workflow_id,
                task.task_id,
                task.attempt,
                result,
                client.id().to_string(),
                started_at,
            ),
            MAX_OUTCOME_BYTES,
        );
        let _ = done.send((reply_to, outcome));
    });
    lock(running).insert(key, attempt, &engine, handle.abort_handle());
}
