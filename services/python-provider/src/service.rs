//! The python-provider as a hub component: a [`gleitzeit_component::Provider`] that turns
//! each task into a pool job. Registration, held tasks, outcome batches, cancellation and
//! the drain on shutdown are [`gleitzeit_component::serve`]'s.
//!
//! Every number of a task that becomes a duration is range-checked here, at the wire: a
//! timeout that is not a positive finite number of seconds up to [`Config::max_timeout`]
//! fails the task with GZ7011 (never a panic). A task whose serving panics still ends with
//! an error outcome (GZ8001) and leaves the held list (the runtime sees to that).
//!
//! Every task runs in a folder of its own holding the files it names ([`crate::files`]),
//! never in the submitter's folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_component::{serve, Concurrency, Provider, ProviderInfo, ServeConfig, TaskContext};
use gleitzeit_hub_client::ClientError;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::component_types;
use gleitzeit_protocol::payloads::ExecuteTask;
use gleitzeit_protocol::routing;
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};

use crate::files::Copies;
use crate::pool::{Limits, PathPolicy, PoolConfig, PythonError, PythonJob, PythonPool};

/// The method of inline code and scripts (the provider also serves `python/function`: the
/// built-in functions, see [`crate::functions`]).
pub const METHOD: &str = "python/execute";

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `python-provider-<random>`).
    pub component_id: Option<String>,
    /// How long running tasks may take to finish once shutdown begins.
    pub grace: Duration,
    /// Worker processes (0 = one per core).
    pub workers: usize,
    /// Python executable.
    pub python: String,
    /// Where each task's own folder is made (and removed when it ends); `None`: the
    /// system temp dir.
    pub work_dir: Option<PathBuf>,
    /// The data dir: a root for `file` and `cwd` unless `allowed_roots` is given.
    pub data_dir: PathBuf,
    /// The only folders `file` and `cwd` may resolve into (besides each task's own folder);
    /// `None`: the data dir, `work_dir`, and the workflow folder an old client's task names.
    pub allowed_roots: Option<Vec<PathBuf>>,
    /// Rlimits and the output cap of every task.
    pub limits: Limits,
    /// Timeout of tasks that name none.
    pub default_timeout: Duration,
    /// Longest timeout a task may ask for; more is refused with GZ7011.
    pub max_timeout: Duration,
    /// The API key to present (`None`: from the environment, the saved login or the local
    /// suite's key; see `gleitzeit_runtime::credentials`).
    pub api_key: Option<String>,
}

impl Config {
    /// Where `file` and `cwd` may point.
    pub fn path_policy(&self) -> PathPolicy {
        match &self.allowed_roots {
            Some(roots) => PathPolicy::new(roots, false),
            None => {
                let mut roots = vec![self.data_dir.clone()];
                roots.extend(self.work_dir.clone());
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
    /// The work dir cannot be made.
    #[error("work dir {0}: {1}")]
    WorkDir(PathBuf, std::io::Error),
}

/// Starts the pool, connects to the hub and serves until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let work_root = config.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_root).map_err(|e| ServiceError::WorkDir(work_root.clone(), e))?;
    let pool = PythonPool::start(PoolConfig {
        size: config.workers,
        python: config.python.clone(),
        default_cwd: config.work_dir.clone(),
        paths: config.path_policy(),
        limits: config.limits.clone(),
        default_timeout: Some(config.default_timeout),
    })
    .await?;
    let provider = Arc::new(Python {
        pool,
        python: config.python.clone(),
        max_timeout: config.max_timeout,
        folders: Arc::new(crate::files::Folders::new(work_root)),
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

/// The provider: the pool, the longest timeout a task may ask for, and where tasks' own
/// folders are made.
struct Python {
    pool: PythonPool,
    python: String,
    max_timeout: Duration,
    folders: Arc<crate::files::Folders>,
}

impl Provider for Python {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            component_type: component_types::PYTHON_PROVIDER.to_string(),
            methods: std::iter::once(METHOD.to_string())
                .chain(crate::functions::capabilities())
                .collect(),
            capacity: u32::try_from(self.pool.size()).unwrap_or(u32::MAX),
            metadata: json!({
                "python": self.python,
                "service_name": routing::BUILTIN_SERVICE,
                "functions": crate::functions::declarations(),
            }),
            // Jobs wait in the pool's own FIFO for a worker.
            concurrency: Concurrency::Provider,
        }
    }

    async fn execute(&self, mut task: ExecuteTask, ctx: TaskContext) -> Result<Value, GzError> {
        let files = std::mem::take(&mut task.files);
        // An empty folder is a kept one (or one mkdir); files are written off the async
        // threads.
        let (folder, copies) = if files.is_empty() {
            crate::files::prepare(&self.folders, &files)?
        } else {
            let folders = self.folders.clone();
            tokio::task::spawn_blocking(move || crate::files::prepare(&folders, &files))
                .await
                .map_err(|e| {
                    GzError::new(
                        ErrorCode::Internal,
                        format!("preparing the task's folder failed: {e}"),
                    )
                })??
        };
        let result = match job_of(&task, self.max_timeout, folder.path(), &copies) {
            // A cancel kills the job (the pool stops the worker); the runtime sends no outcome.
            Ok(job) => self
                .pool
                .execute(job, ctx.cancelled())
                .await
                .map(|o| o.to_json())
                .map_err(|e| error_of(&e)),
            Err(e) => Err(e),
        };
        // Nothing of a cancelled or timed-out job may still run in its folder.
        let cleanly = !ctx.is_cancelled()
            && !matches!(&result, Err(e) if e.code == ErrorCode::TaskTimeout.as_str());
        self.folders.give_back(folder, cleanly).await;
        result
    }

    fn handles_cancel(&self) -> bool {
        true
    }

    fn load(&self) -> Option<u32> {
        Some(u32::try_from(self.pool.busy()).unwrap_or(u32::MAX))
    }

    async fn shutdown(&self) {
        self.pool.shutdown().await;
    }
}

/// Builds a pool job from a task's parameters: inline code or a script (`python/execute`),
/// or a call of a built-in function (`python/function`). The job runs in `own` (the task's
/// folder) and uses the `copies` of the files the task names: a `file:` without a copy is
/// looked for where the task's workflow folder says, if that is allowed here.
fn job_of(
    task: &ExecuteTask,
    max_timeout: Duration,
    own: &Path,
    copies: &Copies,
) -> Result<PythonJob, GzError> {
    let p = &task.params;
    let job = match task.method.as_str() {
        METHOD => {
            let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
            let (file, base_dir) = match text("file") {
                Some(f) => match copies.get(&f) {
                    Some(copy) => (Some(copy.to_string_lossy().into_owned()), None),
                    None => (Some(f), task.base_dir.as_ref().map(PathBuf::from)),
                },
                None => (None, None),
            };
            let mut context = p.get("context").cloned().unwrap_or(Value::Null);
            if let Some(slot) = context.get_mut("file_path") {
                if let Some(copy) = slot.as_str().and_then(|f| copies.get(f)) {
                    *slot = Value::String(copy.to_string_lossy().into_owned());
                }
            }
            PythonJob {
                code: text("code"),
                file,
                base_dir,
                context,
                cwd: text("cwd").map(PathBuf::from),
                ..PythonJob::default()
            }
        }
        routing::PYTHON_FUNCTION => crate::functions::job(p)?,
        other => {
            return Err(GzError::new(
                ErrorCode::UnknownMethod,
                format!("python-provider does not serve {other}"),
            ))
        }
    };
    let timeout = match task.timeout_ms {
        Some(ms) => Some(timeout_from_ms(ms, max_timeout)?),
        None => match p.get("timeout") {
            None | Some(Value::Null) => None,
            Some(t) => Some(timeout_from_param(t, max_timeout)?),
        },
    };
    Ok(PythonJob {
        id: format!("{}/{}#{}", task.workflow_id, task.task_id, task.attempt),
        timeout,
        work_dir: Some(own.to_path_buf()),
        ..job
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
    let err = GzError::new(e.code(), e.to_string()).with_retryable(e.retryable());
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

impl Config {
    /// A provider for tests: two workers of `python3`, `data_dir` as its data dir,
    /// presenting `api_key` to the hub at `hub_url`; the binary's limits and timeouts.
    pub fn for_tests(hub_url: &str, api_key: &str, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            hub_url: hub_url.to_string(),
            component_id: None,
            grace: gleitzeit_component::DEFAULT_GRACE,
            workers: 2,
            python: "python3".into(),
            work_dir: None,
            data_dir: data_dir.into(),
            allowed_roots: None,
            limits: Limits::default(),
            default_timeout: Duration::from_secs(300),
            max_timeout: Duration::from_secs(86_400),
            api_key: Some(api_key.to_string()),
        }
    }
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
            files: Vec::new(),
        }
    }

    const MAX: Duration = Duration::from_secs(3600);

    fn job(task: &ExecuteTask) -> Result<PythonJob, GzError> {
        job_of(task, MAX, Path::new("/tmp/own"), &Copies::new())
    }

    #[test]
    fn a_task_runs_in_its_own_folder_from_the_copies_of_its_files() {
        let copies = Copies::from([
            ("s.py".to_string(), PathBuf::from("/tmp/own/s.py")),
            ("in.csv".to_string(), PathBuf::from("/tmp/own/in.csv")),
        ]);
        let mut t = task(
            json!({"file": "s.py", "context": {"file_path": "in.csv", "n": 1}}),
            None,
        );
        t.base_dir = Some("/home/me/flows".into());
        let made = job_of(&t, MAX, Path::new("/tmp/own"), &copies).expect("job");
        assert_eq!(made.file.as_deref(), Some("/tmp/own/s.py"));
        assert_eq!(made.base_dir, None, "the client's folder is not used");
        assert_eq!(made.work_dir, Some(PathBuf::from("/tmp/own")));
        assert_eq!(
            made.context,
            json!({"file_path": "/tmp/own/in.csv", "n": 1})
        );

        // A script that did not travel (an old client's task) is looked for in the
        // workflow's folder, under the provider's roots.
        t.params = json!({"file": "old.py"});
        let made = job_of(&t, MAX, Path::new("/tmp/own"), &copies).expect("job");
        assert_eq!(made.file.as_deref(), Some("old.py"));
        assert_eq!(made.base_dir, Some(PathBuf::from("/home/me/flows")));
    }

    #[test]
    fn timeouts_out_of_range_are_refused_with_gz7011() {
        for t in [
            json!(1e300),
            json!(-1),
            json!(0),
            json!(3601),
            json!(f64::MAX),
        ] {
            let e = job(&task(json!({"code": "", "timeout": t}), None)).expect_err("out of range");
            assert_eq!(e.code, "GZ7011", "{t}: {e}");
        }
        let e = job(&task(json!({"code": "", "timeout": "ten"}), None)).expect_err("not a number");
        assert_eq!(e.code, "GZ7001");
        for ms in [0, u64::MAX, 3_600_001] {
            let e = job(&task(json!({"code": ""}), Some(ms))).expect_err("out of range");
            assert_eq!(e.code, "GZ7011", "{ms}: {e}");
        }
    }

    #[test]
    fn timeouts_in_range_become_durations() {
        let made = job(&task(json!({"code": "", "timeout": 2.5}), None)).expect("ok");
        assert_eq!(made.timeout, Some(Duration::from_millis(2500)));
        let made = job(&task(json!({"code": ""}), Some(3_600_000))).expect("ok");
        assert_eq!(made.timeout, Some(MAX));
        let made = job(&task(json!({"code": "", "timeout": null}), None)).expect("ok");
        assert_eq!(made.timeout, None);
    }
}
