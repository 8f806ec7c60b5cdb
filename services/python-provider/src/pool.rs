//! A warm pool of Python worker processes that run `python/execute` jobs.
//!
//! Each worker is a long-lived `python3 -c <worker.py>` that reads one JSON request line per
//! job and answers with one JSON reply line (the protocol is described at the top of
//! `worker.py`). Starting an interpreter costs 11–16 ms, a warm worker with cached compiled
//! code runs a trivial job in well under a millisecond, hence the pool.
//!
//! Every worker is owned by an actor task. Jobs wait in one FIFO queue; a free actor takes the
//! next job, sends it to its worker and waits for the reply, the job's timeout, a cancellation
//! or pool shutdown, whichever comes first. On anything but a reply the worker is killed with
//! SIGKILL, reaped, and replaced by a fresh one, so a job that misbehaves never outlives its
//! failure. Workers are also killed when the pool is dropped (`kill_on_drop`), exit on their
//! own when their stdin closes, and within a second of the pool's process dying.
//!
//! Job semantics, as seen by the Python code:
//! - `code` jobs run inline source; `file` jobs run a script (relative paths are resolved
//!   against [`PythonJob::base_dir`], else against the working directory), with the script's
//!   folder first on `sys.path` and `__file__` set; `code` jobs get the working directory
//!   first on `sys.path`, like `python -c`.
//! - The working directory is [`PythonJob::cwd`] (relative to `base_dir` when relative and a
//!   `base_dir` is given), else [`PoolConfig::default_cwd`], else the directory the pool was
//!   started in. It is restored after every job.
//! - Every job runs in a fresh `__main__` module holding `context`, so jobs never see each
//!   other's variables. Imported modules are shared: workers are warm interpreters.
//! - The job's answer is the variable `result` (`None` when unset). What the code prints via
//!   `sys.stdout` is returned as `output`; lower-level writes to file descriptor 1 (and the
//!   output of child processes) go to the worker's stderr, which is logged at debug level.
//! - `sys.exit()` / `sys.exit(0)` ends a job successfully; any other exit code is a failure.
//!
//! Error codes (see [`PythonError::code`]): GZ2025 script raised, GZ2024 syntax error, GZ2020
//! script file or working directory not found, GZ2002 timeout, GZ2006 cancelled, GZ2001
//! worker died or broke the protocol, GZ7001 invalid job, GZ8001 a worker cannot be started,
//! GZ8002 pool shut down.

use std::future::Future;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::{JoinHandle, JoinSet};

/// The worker program, run with `python -c`.
const WORKER_SOURCE: &str = include_str!("worker.py");

/// How long a fresh worker may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for the exit status of a worker whose pipe closed.
const EXIT_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// How the pool starts its workers.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of warm workers; 0 means one per CPU core.
    pub size: usize,
    /// The Python executable (a name looked up on `PATH`, or a path).
    pub python: String,
    /// Working directory of jobs that name none; `None` keeps the pool's own.
    pub default_cwd: Option<PathBuf>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            size: 0,
            python: "python3".to_owned(),
            default_cwd: None,
        }
    }
}

/// One `python/execute` job: exactly one of `code` and `file` must be set.
#[derive(Debug, Clone, Default)]
pub struct PythonJob {
    /// Task id, used in logs only.
    pub id: String,
    /// Inline Python source.
    pub code: Option<String>,
    /// Path of a script; relative paths are resolved against `base_dir`.
    pub file: Option<String>,
    /// Folder that relative `file` and `cwd` paths are relative to (e.g. the workflow's).
    pub base_dir: Option<PathBuf>,
    /// Visible to the code as the variable `context`; `null` becomes `{}`.
    pub context: Value,
    /// Longest time the code may run (queueing time excluded); `None` means no limit.
    pub timeout: Option<Duration>,
    /// Working directory for this job.
    pub cwd: Option<PathBuf>,
}

impl PythonJob {
    /// A job running inline source.
    pub fn inline(code: impl Into<String>) -> Self {
        Self {
            code: Some(code.into()),
            ..Self::default()
        }
    }

    /// A job running the script at `file`.
    pub fn script(file: impl Into<String>) -> Self {
        Self {
            file: Some(file.into()),
            ..Self::default()
        }
    }
}

/// What a successful job produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonOutcome {
    /// The code's `result` variable. JSON types are kept (tuples become arrays); sets and
    /// frozensets become arrays, objects with a `tolist()` method (numpy) become its value,
    /// non-finite floats and every other value become their `repr()` string, and non-string
    /// dict keys become their `repr()` (`None`/`True` keys become `"null"`/`"true"`).
    /// Integers beyond 64 bits arrive as floats.
    pub result: Value,
    /// Everything the code printed to `sys.stdout`.
    pub output: String,
    /// Seconds the code itself ran, measured in the worker.
    pub execution_time: f64,
}

impl PythonOutcome {
    /// The `python/execute` result: `{result, output, success: true, execution_time}`.
    pub fn to_json(&self) -> Value {
        json!({
            "result": self.result,
            "output": self.output,
            "success": true,
            "execution_time": self.execution_time,
        })
    }
}

/// Why a job failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PythonError {
    /// The job itself is malformed (e.g. both or neither of `code` and `file`).
    #[error("invalid python job: {0}")]
    InvalidJob(String),
    /// The script file or the working directory does not exist or cannot be read.
    #[error("{0}")]
    NotFound(String),
    /// The code does not compile; `detail` quotes the line with a caret.
    #[error("python syntax error:\n{detail}")]
    Syntax {
        /// Last line of the report, e.g. `SyntaxError: invalid syntax`.
        message: String,
        /// Line number in the code or script.
        line: Option<u32>,
        /// Python's report: file, line, the line itself and a caret.
        detail: String,
    },
    /// The code raised an exception (or called `sys.exit` with a non-zero code).
    #[error("python script failed:\n{traceback}")]
    Script {
        /// The exception, e.g. `ZeroDivisionError: division by zero`.
        message: String,
        /// The full traceback text, the worker's own frame left out.
        traceback: String,
        /// Line of the code or script where the exception surfaced last.
        line: Option<u32>,
        /// What the code printed before failing.
        output: String,
    },
    /// The job ran longer than its timeout; its worker was killed and replaced.
    #[error("python job timed out after {after:?}; its worker was killed")]
    Timeout {
        /// The job's timeout.
        after: Duration,
    },
    /// The job was cancelled; if it was running, its worker was killed and replaced.
    #[error("python job was cancelled")]
    Cancelled,
    /// The worker process died while running the job (e.g. `os._exit`, a segfault).
    #[error("python worker died while running the job ({detail}); it has been replaced")]
    WorkerDied {
        /// How it ended, e.g. `exit status: 1` or `signal: 11 (SIGSEGV)`.
        detail: String,
    },
    /// The worker sent a reply that does not fit the protocol.
    #[error("python worker broke the protocol: {detail}")]
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// A worker process could not be started.
    #[error("cannot start python worker `{python}`: {detail}")]
    Spawn {
        /// The configured executable.
        python: String,
        /// Why.
        detail: String,
    },
    /// The pool has been shut down.
    #[error("python pool is shut down")]
    Closed,
}

impl PythonError {
    /// The Gleitzeit error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJob(_) => "GZ7001",
            Self::NotFound(_) => "GZ2020",
            Self::Syntax { .. } => "GZ2024",
            Self::Script { .. } => "GZ2025",
            Self::Timeout { .. } => "GZ2002",
            Self::Cancelled => "GZ2006",
            Self::WorkerDied { .. } | Self::Protocol { .. } => "GZ2001",
            Self::Spawn { .. } => "GZ8001",
            Self::Closed => "GZ8002",
        }
    }

    /// Whether running the same job again (here or on another provider) may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. }
                | Self::WorkerDied { .. }
                | Self::Protocol { .. }
                | Self::Spawn { .. }
                | Self::Closed
        )
    }
}

/// A pool of warm Python workers; cheap to clone, every clone drives the same workers.
#[derive(Clone)]
pub struct PythonPool {
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    queue: mpsc::UnboundedSender<Task>,
    busy: Arc<AtomicUsize>,
    next_seq: AtomicU64,
    shutdown: watch::Sender<bool>,
    actors: Mutex<Vec<JoinHandle<()>>>,
}

impl PythonPool {
    /// Starts `config.size` workers and waits until each is ready.
    pub async fn start(config: PoolConfig) -> Result<Self, PythonError> {
        let size = match config.size {
            0 => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            n => n,
        };
        let spec = Arc::new(WorkerSpec {
            python: config.python,
            cwd: config.default_cwd,
        });
        let mut starting = JoinSet::new();
        for _ in 0..size {
            let spec = Arc::clone(&spec);
            starting.spawn(async move { Worker::spawn(&spec).await });
        }
        let mut workers = Vec::with_capacity(size);
        while let Some(started) = starting.join_next().await {
            let worker = started.map_err(|e| PythonError::Spawn {
                python: spec.python.clone(),
                detail: format!("start-up task failed: {e}"),
            })??;
            workers.push(worker);
        }

        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let queue_rx = Arc::new(Mutex::new(queue_rx));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let busy = Arc::new(AtomicUsize::new(0));
        let actors = workers
            .into_iter()
            .map(|worker| {
                let actor = Actor {
                    spec: Arc::clone(&spec),
                    queue: Arc::clone(&queue_rx),
                    busy: Arc::clone(&busy),
                    shutdown: shutdown_rx.clone(),
                };
                tokio::spawn(actor.run(worker))
            })
            .collect();
        tracing::info!(size, python = %spec.python, "python worker pool started");
        Ok(Self {
            shared: Arc::new(Shared {
                size,
                queue: queue_tx,
                busy,
                next_seq: AtomicU64::new(1),
                shutdown: shutdown_tx,
                actors: Mutex::new(actors),
            }),
        })
    }

    /// Runs a job on the next free worker (jobs are served in arrival order).
    ///
    /// When `cancel` completes first, the job fails with [`PythonError::Cancelled`]; if it was
    /// already running, its worker has been killed by the time this returns. Pass
    /// `std::future::pending()` for a job that cannot be cancelled. Dropping the returned
    /// future cancels the job as well (the kill then happens in the background).
    pub async fn execute(
        &self,
        job: PythonJob,
        cancel: impl Future<Output = ()>,
    ) -> Result<PythonOutcome, PythonError> {
        if *self.shared.shutdown.borrow() {
            return Err(PythonError::Closed);
        }
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let request = encode_request(seq, &job)?;
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply_tx, mut reply_rx) = oneshot::channel();
        let (kill_tx, kill_rx) = oneshot::channel();
        let task = Task {
            seq,
            job_id: job.id,
            request,
            timeout: job.timeout,
            state: Arc::clone(&state),
            reply: reply_tx,
            kill: kill_rx,
        };
        self.shared
            .queue
            .send(task)
            .map_err(|_| PythonError::Closed)?;

        let cancel = std::pin::pin!(cancel);
        tokio::select! {
            biased;
            reply = &mut reply_rx => return reply.unwrap_or(Err(PythonError::Closed)),
            () = cancel => {}
        }
        if state
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(PythonError::Cancelled);
        }
        // Already running: have the actor kill the worker, and wait until it has.
        let _ = kill_tx.send(());
        reply_rx.await.unwrap_or(Err(PythonError::Closed))
    }

    /// Number of workers.
    pub fn size(&self) -> usize {
        self.shared.size
    }

    /// Number of workers running a job right now.
    pub fn busy(&self) -> usize {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// Kills every worker and waits until they are gone. Running jobs fail with
    /// [`PythonError::Closed`], as does every later `execute`.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let actors = std::mem::take(&mut *self.shared.actors.lock().await);
        for actor in actors {
            if let Err(e) = actor.await {
                tracing::warn!(error = %e, "python worker actor ended abnormally");
            }
        }
        tracing::info!("python worker pool shut down");
    }
}

/// Wire format of a request to `worker.py`.
#[derive(Serialize)]
struct Request<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a Path>,
    context: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<&'a Path>,
}

/// Checks the job and renders its request line (newline included).
fn encode_request(seq: u64, job: &PythonJob) -> Result<Vec<u8>, PythonError> {
    let resolve = |path: &Path| match &job.base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    };
    let file = job.file.as_deref().map(|f| resolve(Path::new(f)));
    let cwd = job.cwd.as_deref().map(resolve);
    let (code, file) = match (job.code.as_deref(), file) {
        (Some(_), Some(_)) => {
            return Err(PythonError::InvalidJob(
                "give either `code` or `file`, not both".to_owned(),
            ))
        }
        (None, None) => {
            return Err(PythonError::InvalidJob(
                "give `code` (inline source) or `file` (a script path)".to_owned(),
            ))
        }
        pair => pair,
    };
    let request = Request {
        seq,
        code,
        file: file.as_deref(),
        context: &job.context,
        cwd: cwd.as_deref(),
    };
    let mut line = serde_json::to_vec(&request)
        .map_err(|e| PythonError::InvalidJob(format!("cannot encode the job: {e}")))?;
    line.push(b'\n');
    Ok(line)
}

/// Wire format of a line from `worker.py`.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ready {
        pid: u32,
        version: String,
    },
    Ok {
        seq: u64,
        result: Value,
        output: String,
        time: f64,
    },
    Error {
        seq: Option<u64>,
        kind: FailureKind,
        message: String,
        #[serde(default)]
        traceback: String,
        #[serde(default)]
        line: Option<u32>,
        #[serde(default)]
        output: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FailureKind {
    Exception,
    Syntax,
    NotFound,
    Internal,
}

/// Job states shared by the caller and the actor, so that exactly one of them decides the
/// fate of a job cancelled while it is still queued.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// A queued job.
struct Task {
    seq: u64,
    job_id: String,
    request: Vec<u8>,
    timeout: Option<Duration>,
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<PythonOutcome, PythonError>>,
    /// Fires (or closes, when the caller went away) to have a running job's worker killed.
    kill: oneshot::Receiver<()>,
}

impl Task {
    /// Marks the job as running, unless its caller cancelled it or went away meanwhile.
    fn claim(&self) -> bool {
        !self.reply.is_closed()
            && self
                .state
                .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

/// How to start a worker.
struct WorkerSpec {
    python: String,
    cwd: Option<PathBuf>,
}

/// Owns one worker slot: takes jobs from the queue, keeps a live worker in the slot.
struct Actor {
    spec: Arc<WorkerSpec>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Task>>>,
    busy: Arc<AtomicUsize>,
    shutdown: watch::Receiver<bool>,
}

impl Actor {
    async fn run(mut self, first: Worker) {
        let mut worker = Some(first);
        while let Some(mut task) = self.next_task().await {
            if !task.claim() {
                continue;
            }
            let mut current = match worker.take() {
                Some(w) => w,
                None => match Worker::spawn(&self.spec).await {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = task.reply.send(Err(e));
                        continue;
                    }
                },
            };
            self.busy.fetch_add(1, Ordering::Relaxed);
            let (result, healthy) = current.run(&mut task, &mut self.shutdown).await;
            if healthy {
                worker = Some(current);
            } else {
                current.kill().await;
            }
            // Not busy any more before the caller hears back, so it sees a consistent count.
            self.busy.fetch_sub(1, Ordering::Relaxed);
            let _ = task.reply.send(result);
            if worker.is_none() && !*self.shutdown.borrow() {
                worker = self.replacement().await;
            }
        }
        if let Some(w) = worker {
            w.kill().await;
        }
    }

    /// The next job, or `None` once the pool shuts down or is dropped.
    async fn next_task(&mut self) -> Option<Task> {
        let shutdown = &mut self.shutdown;
        let mut queue = tokio::select! {
            queue = self.queue.lock() => queue,
            _ = shutdown.wait_for(|closed| *closed) => return None,
        };
        tokio::select! {
            task = queue.recv() => task,
            _ = shutdown.wait_for(|closed| *closed) => None,
        }
    }

    /// A fresh worker for the slot; on failure the slot stays empty and the next job tries.
    async fn replacement(&self) -> Option<Worker> {
        match Worker::spawn(&self.spec).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot replace python worker");
                None
            }
        }
    }
}

/// One live `worker.py` process.
struct Worker {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: String,
}

/// How an exchange with a worker ended, short of a usable reply.
enum Broken {
    /// The pipe closed or failed: the worker is gone.
    Lost(String),
    /// The worker wrote something that is not a reply.
    Garbled(String),
}

impl Worker {
    async fn spawn(spec: &WorkerSpec) -> Result<Self, PythonError> {
        let spawn_error = |detail: String| PythonError::Spawn {
            python: spec.python.clone(),
            detail,
        };
        let mut command = Command::new(&spec.python);
        command
            .arg("-c")
            .arg(WORKER_SOURCE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Own process group: a Ctrl-C meant for the service must not hit running scripts.
        #[cfg(unix)]
        command.process_group(0);
        if let Some(dir) = &spec.cwd {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|e| spawn_error(e.to_string()))?;
        let pid = child.id().unwrap_or_default();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_error("child pipes are missing".to_owned()));
        };
        tokio::spawn(log_stderr(stderr, pid));
        let mut worker = Self {
            child,
            pid,
            stdin,
            stdout: BufReader::new(stdout),
            line: String::new(),
        };
        match tokio::time::timeout(READY_TIMEOUT, worker.read_reply()).await {
            Ok(Ok(Reply::Ready { pid, version })) => {
                tracing::debug!(pid, %version, "python worker ready");
                Ok(worker)
            }
            Ok(Ok(_)) => Err(spawn_error(
                "worker did not start with a ready line".to_owned(),
            )),
            Ok(Err(Broken::Garbled(detail))) => Err(spawn_error(detail)),
            Ok(Err(Broken::Lost(detail))) => {
                let status = worker.exit_status().await;
                Err(spawn_error(format!(
                    "worker ended before it was ready ({detail}, {status}); its stderr is logged at debug level"
                )))
            }
            Err(_) => Err(spawn_error(format!(
                "worker not ready after {READY_TIMEOUT:?}"
            ))),
        }
    }

    /// Runs one job. Returns the job's result and whether this worker may be used again.
    async fn run(
        &mut self,
        task: &mut Task,
        shutdown: &mut watch::Receiver<bool>,
    ) -> (Result<PythonOutcome, PythonError>, bool) {
        enum End {
            Replied(Result<Reply, Broken>),
            TimedOut(Duration),
            Cancelled,
            Closed,
        }
        let timeout = task.timeout;
        let deadline = async {
            match timeout {
                Some(after) => {
                    tokio::time::sleep(after).await;
                    after
                }
                None => std::future::pending().await,
            }
        };
        let end = tokio::select! {
            reply = self.exchange(&task.request) => End::Replied(reply),
            after = deadline => End::TimedOut(after),
            _ = &mut task.kill => End::Cancelled,
            _ = shutdown.wait_for(|closed| *closed) => End::Closed,
        };
        let (pid, job) = (self.pid, task.job_id.as_str());
        match end {
            End::Replied(Ok(reply)) => self.judge(reply, task.seq),
            End::Replied(Err(Broken::Lost(detail))) => {
                let status = self.exit_status().await;
                tracing::warn!(pid, job, %detail, %status, "python worker died during a job");
                (Err(PythonError::WorkerDied { detail: status }), false)
            }
            End::Replied(Err(Broken::Garbled(detail))) => {
                tracing::error!(pid, job, %detail, "python worker broke the protocol");
                (Err(PythonError::Protocol { detail }), false)
            }
            End::TimedOut(after) => {
                tracing::warn!(pid, job, ?after, "python job timed out; killing its worker");
                (Err(PythonError::Timeout { after }), false)
            }
            End::Cancelled => {
                tracing::info!(pid, job, "python job cancelled; killing its worker");
                (Err(PythonError::Cancelled), false)
            }
            End::Closed => (Err(PythonError::Closed), false),
        }
    }

    /// Sends one request and reads one reply.
    async fn exchange(&mut self, request: &[u8]) -> Result<Reply, Broken> {
        self.stdin
            .write_all(request)
            .await
            .map_err(|e| Broken::Lost(format!("cannot send the job: {e}")))?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, Broken> {
        self.line.clear();
        match self.stdout.read_line(&mut self.line).await {
            Ok(0) => return Err(Broken::Lost("its stdout closed".to_owned())),
            Ok(_) => {}
            Err(e) => return Err(Broken::Lost(format!("cannot read its reply: {e}"))),
        }
        serde_json::from_str(&self.line).map_err(|e| {
            let start: String = self.line.chars().take(200).collect();
            Broken::Garbled(format!("unreadable reply ({e}): {start}"))
        })
    }

    /// Turns a well-formed reply into the job's result.
    fn judge(&self, reply: Reply, seq: u64) -> (Result<PythonOutcome, PythonError>, bool) {
        let out_of_step = |got: Option<u64>| {
            let detail = format!("reply for request {got:?} while waiting for {seq}");
            (Err(PythonError::Protocol { detail }), false)
        };
        match reply {
            Reply::Ok {
                seq: got,
                result,
                output,
                time,
            } => {
                if got != seq {
                    return out_of_step(Some(got));
                }
                let outcome = PythonOutcome {
                    result,
                    output,
                    execution_time: time,
                };
                (Ok(outcome), true)
            }
            Reply::Error {
                seq: got,
                kind,
                message,
                traceback,
                line,
                output,
            } => {
                if got != Some(seq) {
                    return out_of_step(got);
                }
                let error = match kind {
                    FailureKind::Exception => PythonError::Script {
                        message,
                        traceback,
                        line,
                        output,
                    },
                    FailureKind::Syntax => PythonError::Syntax {
                        message,
                        line,
                        detail: traceback,
                    },
                    FailureKind::NotFound => PythonError::NotFound(message),
                    FailureKind::Internal => {
                        tracing::error!(pid = self.pid, %message, %traceback, "python worker error");
                        PythonError::Protocol { detail: message }
                    }
                };
                (Err(error), true)
            }
            Reply::Ready { .. } => out_of_step(None),
        }
    }

    /// The exit status of a worker whose pipes closed, killing it if it lingers.
    async fn exit_status(&mut self) -> String {
        match tokio::time::timeout(EXIT_STATUS_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("exit status unknown: {e}"),
            Err(_) => {
                let _ = self.child.start_kill();
                "pipes closed but the process lingered; killed".to_owned()
            }
        }
    }

    /// SIGKILLs the worker and reaps it, so it is really gone when this returns.
    async fn kill(mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // already exited and reaped
        }
        if let Err(e) = self.child.kill().await {
            tracing::warn!(pid = self.pid, error = %e, "cannot kill python worker");
        }
    }
}

/// Forwards a worker's stderr (tracebacks of its own, output of child processes) to the log.
async fn log_stderr(stderr: ChildStderr, pid: u32) {
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => tracing::debug!(pid, "python stderr: {line}"),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(pid, error = %e, "cannot read python stderr");
                break;
            }
        }
    }
}
