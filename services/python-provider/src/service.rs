//! The python-provider as a hub component: takes `execute_tasks` batches, runs each task
//! in the pool, and sends outcomes back in batches (whatever finished since the last send).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gleitzeit_hub_client::{
    connect_component, next_envelope, outcome_sender, registration, spawn_held_reports,
    ClientConfig, ClientError, Holdings, HubClient,
};
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types};
use gleitzeit_protocol::payloads::{CancelTasks, ExecuteTask, ExecuteTasks, TaskOutcome, TaskRef};
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::pool::{PoolConfig, PythonError, PythonJob, PythonPool};

/// The method this provider serves.
pub const METHOD: &str = "python/execute";

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `python-provider-<random>`).
    pub component_id: Option<String>,
    /// Worker processes (0 = one per core).
    pub workers: usize,
    /// Python executable.
    pub python: String,
    /// Working directory for tasks whose workflow folder is unknown.
    pub default_cwd: Option<PathBuf>,
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub connection failed for good.
    #[error(transparent)]
    Hub(#[from] ClientError),
    /// Python workers could not be started.
    #[error(transparent)]
    Pool(#[from] PythonError),
}

/// Held tasks (queued in the pool or running), with a way to cancel each.
type Running = Arc<Mutex<Holdings<oneshot::Sender<()>>>>;

/// Starts the pool, connects to the hub and serves until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let pool = PythonPool::start(PoolConfig {
        size: config.workers,
        python: config.python.clone(),
        default_cwd: config.default_cwd.clone(),
    })
    .await?;
    let ty = component_types::PYTHON_PROVIDER;
    let id = config
        .component_id
        .clone()
        .unwrap_or_else(|| gleitzeit_runtime::default_component_id(ty));
    let reg = registration(
        ty,
        id,
        vec![METHOD.to_string()],
        pool.size() as u32,
        json!({ "python": config.python }),
    );
    let Some((client, mut incoming)) =
        connect_component(ClientConfig::component(config.hub_url, reg), &shutdown).await?
    else {
        pool.shutdown().await;
        return Ok(());
    };
    let running: Running = Arc::new(Mutex::new(Holdings::default()));
    let reports = spawn_held_reports(&client, {
        let running = running.clone();
        move || lock(&running).report()
    });
    let done_tx = outcome_sender(&client);
    while let Some(env) = next_envelope(&client, &mut incoming, &shutdown).await {
        match env.event.as_str() {
            events::EXECUTE_TASKS => match env.payload_as::<ExecuteTasks>() {
                Ok(batch) => {
                    for task in batch.tasks {
                        tokio::spawn(execute(
                            pool.clone(),
                            client.clone(),
                            running.clone(),
                            task,
                            env.source.clone(),
                            done_tx.clone(),
                        ));
                    }
                }
                Err(e) => warn!(error = %e, "bad execute_tasks payload"),
            },
            events::CANCEL_TASKS => match env.payload_as::<CancelTasks>() {
                Ok(c) => {
                    let mut held = lock(&running);
                    for t in c.tasks {
                        if let Some(cancel) = held.take(&t) {
                            let _ = cancel.send(());
                        }
                    }
                }
                Err(e) => warn!(error = %e, "bad cancel_tasks payload"),
            },
            other => {
                let err = GzError::new(
                    ErrorCode::UnknownEvent,
                    format!("python-provider does not handle {other:?}"),
                );
                let _ = client.respond(&env, Err(err));
            }
        }
    }
    reports.abort();
    client.close().await;
    pool.shutdown().await;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds a pool job from a task's parameters.
fn job_of(task: &ExecuteTask) -> Result<PythonJob, GzError> {
    if task.method != METHOD {
        return Err(GzError::new(
            ErrorCode::UnknownMethod,
            format!("python-provider does not serve {}", task.method),
        ));
    }
    let p = &task.params;
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let timeout = task.timeout_ms.map(Duration::from_millis).or_else(|| {
        p.get("timeout")
            .and_then(Value::as_f64)
            .filter(|t| *t > 0.0)
            .map(Duration::from_secs_f64)
    });
    let base_dir = task.base_dir.as_ref().map(PathBuf::from);
    Ok(PythonJob {
        id: format!("{}/{}#{}", task.workflow_id, task.task_id, task.attempt),
        code: text("code"),
        file: text("file"),
        context: p.get("context").cloned().unwrap_or(Value::Null),
        timeout,
        cwd: text("cwd").map(PathBuf::from).or_else(|| base_dir.clone()),
        base_dir,
    })
}

fn error_of(e: &PythonError) -> GzError {
    let code = ErrorCode::from_code(e.code()).unwrap_or(ErrorCode::TaskFailed);
    let mut err = GzError::new(code, e.to_string()).with_retryable(e.retryable());
    if let PythonError::Script { traceback, .. } = e {
        err = err.with_details(json!({ "traceback": traceback }));
    }
    err
}

async fn execute(
    pool: PythonPool,
    client: HubClient,
    running: Running,
    task: ExecuteTask,
    reply_to: String,
    done: mpsc::UnboundedSender<(String, TaskOutcome)>,
) {
    let key = TaskRef {
        workflow_id: task.workflow_id.clone(),
        task_id: task.task_id.clone(),
    };
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    lock(&running).insert(key.clone(), task.attempt, &reply_to, cancel_tx);
    client.set_load(pool.busy() as u32 + 1);
    let started_at = now_millis();
    let result = match job_of(&task) {
        Ok(job) => pool
            .execute(job, async move {
                // Only an explicit cancel stops the job; a dropped sender does not.
                if cancel_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
            .await
            .map(|o| o.to_json())
            .map_err(|e| error_of(&e)),
        Err(e) => Err(e),
    };
    lock(&running).finish(&key, task.attempt);
    client.set_load(pool.busy() as u32);
    let outcome = TaskOutcome::finished(
        task.workflow_id,
        task.task_id,
        task.attempt,
        result,
        client.id().to_string(),
        started_at,
    );
    let _ = done.send((reply_to, outcome));
}
