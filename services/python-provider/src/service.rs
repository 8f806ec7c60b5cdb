//! The python-provider as a hub component: takes `execute_tasks` batches, runs each task
//! in the pool, and sends outcomes back in batches (whatever finished since the last send,
//! bounded in size: [`crate::outcomes`]).
//!
//! Every number of a task that becomes a duration is range-checked here, at the wire: a
//! timeout that is not a positive finite number of seconds up to [`Config::max_timeout`]
//! fails the task with GZ7011 (never a panic). Each task runs in its own spawned task; should
//! that panic, the task still ends with an error outcome (GZ8001) and leaves the held list.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gleitzeit_hub_client::{
    connect_component, next_envelope, registration, spawn_held_reports, ClientConfig, ClientError,
    Holdings, HubClient,
};
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types};
use gleitzeit_protocol::payloads::{CancelTasks, ExecuteTask, ExecuteTasks, TaskOutcome, TaskRef};
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::outcomes::outcome_sender;
use crate::pool::{Limits, PathPolicy, PoolConfig, PythonError, PythonJob, PythonPool};

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
    /// The data dir: a root for `file` and `cwd` unless `allowed_roots` is given.
    pub data_dir: PathBuf,
    /// The only folders `file` and `cwd` may resolve into; `None`: each task's workflow
    /// folder, the data dir and `default_cwd`.
    pub allowed_roots: Option<Vec<PathBuf>>,
    /// Rlimits and the output cap of every task.
    pub limits: Limits,
    /// Timeout of tasks that name none.
    pub default_timeout: Duration,
    /// Longest timeout a task may ask for; more is refused with GZ7011.
    pub max_timeout: Duration,
}

impl Config {
    /// Where `file` and `cwd` may point.
    pub fn path_policy(&self) -> PathPolicy {
        match &self.allowed_roots {
            Some(roots) => PathPolicy::new(roots, false),
            None => {
                let mut roots = vec![self.data_dir.clone()];
                roots.extend(self.default_cwd.clone());
                PathPolicy::new(&roots, true)
            }
        }
    }
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
        paths: config.path_policy(),
        limits: config.limits.clone(),
        default_timeout: Some(config.default_timeout),
    })
    .await?;
    let max_timeout = config.max_timeout;
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
                        spawn_task(
                            Runner {
                                pool: pool.clone(),
                                client: client.clone(),
                                running: running.clone(),
                                reply_to: env.source.clone(),
                                done: done_tx.clone(),
                                max_timeout,
                            },
                            task,
                        );
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
fn job_of(task: &ExecuteTask, max_timeout: Duration) -> Result<PythonJob, GzError> {
    if task.method != METHOD {
        return Err(GzError::new(
            ErrorCode::UnknownMethod,
            format!("python-provider does not serve {}", task.method),
        ));
    }
    let p = &task.params;
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let timeout = match task.timeout_ms {
        Some(ms) => Some(timeout_from_ms(ms, max_timeout)?),
        None => match p.get("timeout") {
            None | Some(Value::Null) => None,
            Some(t) => Some(timeout_from_param(t, max_timeout)?),
        },
    };
    Ok(PythonJob {
        id: format!("{}/{}#{}", task.workflow_id, task.task_id, task.attempt),
        code: text("code"),
        file: text("file"),
        context: p.get("context").cloned().unwrap_or(Value::Null),
        timeout,
        cwd: text("cwd").map(PathBuf::from),
        base_dir: task.base_dir.as_ref().map(PathBuf::from),
    })
}

/// The engine's `timeout_ms`, within `1 ms ..= max`.
fn timeout_from_ms(ms: u64, max: Duration) -> Result<Duration, GzError> {
    let timeout = Duration::from_millis(ms);
    if ms == 0 || timeout > max {
        return Err(out_of_range(&format!("{ms} ms"), max));
    }
    Ok(timeout)
}

/// `parameters.timeout`: seconds, a finite number within `0 < t <= max`.
fn timeout_from_param(value: &Value, max: Duration) -> Result<Duration, GzError> {
    let Some(secs) = value.as_f64() else {
        return Err(GzError::new(
            ErrorCode::InvalidField,
            format!("parameters.timeout must be a number of seconds, not {value}"),
        ));
    };
    if !(secs > 0.0 && secs <= max.as_secs_f64()) {
        return Err(out_of_range(&format!("{value} s"), max));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| out_of_range(&format!("{value} s"), max))
}

fn out_of_range(given: &str, max: Duration) -> GzError {
    GzError::new(
        ErrorCode::OutOfRange,
        format!(
            "timeout {given} is out of range: python tasks take more than 0 and at most {} s",
            max.as_secs_f64()
        ),
    )
}

fn error_of(e: &PythonError) -> GzError {
    let code = ErrorCode::from_code(e.code()).unwrap_or(ErrorCode::TaskFailed);
    let err = GzError::new(code, e.to_string()).with_retryable(e.retryable());
    match e {
        PythonError::Script { traceback, .. } => {
            err.with_details(json!({ "traceback": traceback }))
        }
        PythonError::ResourceLimit {
            traceback, output, ..
        } => err.with_details(json!({ "traceback": traceback, "output": output })),
        PythonError::OutputTooLarge { output, .. } => err.with_details(json!({ "output": output })),
        _ => err,
    }
}

/// What every task of the service needs to run and report.
struct Runner {
    pool: PythonPool,
    client: HubClient,
    running: Running,
    reply_to: String,
    done: mpsc::UnboundedSender<(String, TaskOutcome)>,
    max_timeout: Duration,
}

/// Runs `task` in a spawned task of its own; should that panic, the task still ends with an
/// error outcome and is no longer reported as held.
fn spawn_task(runner: Runner, task: ExecuteTask) {
    let key = TaskRef {
        workflow_id: task.workflow_id.clone(),
        task_id: task.task_id.clone(),
    };
    let attempt = task.attempt;
    let (client, running, reply_to, done) = (
        runner.client.clone(),
        runner.running.clone(),
        runner.reply_to.clone(),
        runner.done.clone(),
    );
    let started_at = now_millis();
    let work = tokio::spawn(execute(runner, task));
    tokio::spawn(async move {
        let Err(e) = work.await else { return };
        if !e.is_panic() {
            return;
        }
        tracing::error!(task = %key.task_id, workflow = %key.workflow_id, "python task panicked");
        lock(&running).finish(&key, attempt);
        let error = GzError::new(
            ErrorCode::Internal,
            "the python-provider failed while running this task (a bug; see its log)",
        );
        let outcome = TaskOutcome::finished(
            key.workflow_id,
            key.task_id,
            attempt,
            Err(error),
            client.id().to_string(),
            started_at,
        );
        let _ = done.send((reply_to, outcome));
    });
}

async fn execute(runner: Runner, task: ExecuteTask) {
    let Runner {
        pool,
        client,
        running,
        reply_to,
        done,
        max_timeout,
    } = runner;
    let key = TaskRef {
        workflow_id: task.workflow_id.clone(),
        task_id: task.task_id.clone(),
    };
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    lock(&running).insert(key.clone(), task.attempt, &reply_to, cancel_tx);
    client.set_load(pool.busy() as u32 + 1);
    let started_at = now_millis();
    let result = match job_of(&task, max_timeout) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn task(params: Value, timeout_ms: Option<u64>) -> ExecuteTask {
        ExecuteTask {
            workflow_id: "wf".to_owned(),
            task_id: "t".to_owned(),
            attempt: 1,
            method: METHOD.to_owned(),
            params,
            timeout_ms,
            base_dir: None,
        }
    }

    const MAX: Duration = Duration::from_secs(3600);

    #[test]
    fn timeouts_out_of_range_are_refused_with_gz7011() {
        for t in [
            json!(1e300),
            json!(-1),
            json!(0),
            json!(3601),
            json!(f64::MAX),
        ] {
            let e = job_of(&task(json!({"code": "", "timeout": t}), None), MAX)
                .expect_err("out of range");
            assert_eq!(e.code, "GZ7011", "{t}: {e}");
        }
        let e = job_of(&task(json!({"code": "", "timeout": "ten"}), None), MAX)
            .expect_err("not a number");
        assert_eq!(e.code, "GZ7001");
        for ms in [0, u64::MAX, 3_600_001] {
            let e = job_of(&task(json!({"code": ""}), Some(ms)), MAX).expect_err("out of range");
            assert_eq!(e.code, "GZ7011", "{ms}: {e}");
        }
    }

    #[test]
    fn timeouts_in_range_become_durations() {
        let job = job_of(&task(json!({"code": "", "timeout": 2.5}), None), MAX).expect("ok");
        assert_eq!(job.timeout, Some(Duration::from_millis(2500)));
        let job = job_of(&task(json!({"code": ""}), Some(3_600_000)), MAX).expect("ok");
        assert_eq!(job.timeout, Some(MAX));
        let job = job_of(&task(json!({"code": "", "timeout": null}), None), MAX).expect("ok");
        assert_eq!(job.timeout, None);
    }
}
