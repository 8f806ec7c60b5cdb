//! One live `worker.py` process: starting it, sending jobs (the next one may wait in the pipe
//! while one runs: `pool.rs`), reading each job's reply, and killing it together with every
//! process its job started ([`crate::reap`]).

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

use crate::error::PythonError;
use crate::job::PythonOutcome;
use crate::limits::Limits;
use crate::pool::Task;
use crate::reap;

/// The worker program, run with `python -c`.
const WORKER_SOURCE: &str = include_str!("worker.py");

/// How long a fresh worker may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a cancelled job waiting in the pipe may take to be reported skipped once the job
/// before it ended; past that it is running (the skip came too late) and its worker is killed.
const SKIP_GRACE: Duration = Duration::from_millis(200);

/// How long to wait for the exit status of a worker whose pipe closed.
const EXIT_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// `SIGXCPU` and `SIGXFSZ` on Linux: a worker ended by one hit a resource limit.
const SIGXCPU: i32 = 24;
const SIGXFSZ: i32 = 25;

/// How to start a worker.
pub(crate) struct WorkerSpec {
    pub python: String,
    pub cwd: Option<PathBuf>,
    pub limits: Limits,
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
    /// A job the pool asked to skip before it started.
    Skipped {
        seq: u64,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FailureKind {
    Exception,
    Syntax,
    NotFound,
    Resource,
    TooLarge,
    Internal,
}

/// How an exchange with a worker ended, short of a usable reply.
enum Broken {
    /// The pipe closed or failed: the worker is gone.
    Lost(String),
    /// The worker wrote something that is not a reply.
    Garbled(String),
}

/// One live `worker.py` process.
pub(crate) struct Worker {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    line: Vec<u8>,
    line_limit: usize,
    /// Set once the process is known to be gone and reaped.
    reaped: bool,
}

impl Worker {
    pub(crate) async fn spawn(spec: &WorkerSpec) -> Result<Self, PythonError> {
        let spawn_error = |detail: String| PythonError::Spawn {
            python: spec.python.clone(),
            detail,
        };
        let mut command = Command::new(&spec.python);
        command
            .arg("-c")
            .arg(WORKER_SOURCE)
            .arg(spec.limits.worker_config())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Workflow code must not find the provider's key in its environment.
            .env_remove(gleitzeit_runtime::credentials::API_KEY_ENV)
            .kill_on_drop(true);
        // Own process group: a Ctrl-C meant for the service must not hit running scripts,
        // and a timeout kills the whole group.
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
            line: Vec::new(),
            line_limit: spec.limits.reply_line_limit(),
            reaped: false,
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

    /// Sends a job: the worker starts it when the job before it (if any) has ended.
    pub(crate) async fn send(&mut self, request: &[u8]) -> Result<(), String> {
        self.stdin
            .write_all(request)
            .await
            .map_err(|e| format!("cannot send the job: {e}"))
    }

    /// Waits for the end of the job `task`, the one the worker runs now (sent with
    /// [`Worker::send`], `sent` being how that went). `behind` are the jobs taken after it,
    /// oldest first, each with whether it was sent to wait in the pipe: when the caller of a
    /// sent one cancels it meanwhile, the worker is told to skip it (and its `skip` set). A
    /// task whose `skip` is set already is cancelled: its skip is awaited for [`SKIP_GRACE`],
    /// then its worker is killed (the skip came too late and it runs). Returns the job's
    /// result and whether this worker may be used again.
    pub(crate) async fn finish(
        &mut self,
        task: &mut Task,
        sent: Result<(), String>,
        behind: &mut [(Task, bool)],
        shutdown: &mut watch::Receiver<bool>,
    ) -> (Result<PythonOutcome, PythonError>, bool) {
        enum End {
            Replied(Result<Reply, Broken>),
            TimedOut(Duration),
            Cancelled,
            Closed,
        }
        let (pid, seq) = (self.pid, task.seq);
        let timeout = if task.skip {
            Some(SKIP_GRACE)
        } else {
            task.timeout
        };
        let deadline = async {
            match timeout {
                Some(after) => {
                    tokio::time::sleep(after).await;
                    after
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let end = match sent {
            Err(detail) => End::Replied(Err(Broken::Lost(detail))),
            Ok(()) => {
                let limit = self.line_limit as u64;
                self.line.clear();
                let ended = {
                    let read = read_line(&mut self.stdout, &mut self.line, limit);
                    tokio::pin!(read);
                    loop {
                        // The first job waiting in the pipe whose caller cancels it.
                        let skip = std::future::poll_fn(|cx| {
                            let waiting = behind.iter_mut().take_while(|(_, sent)| *sent);
                            for (b, _) in waiting.filter(|(b, _)| !b.skip) {
                                if std::pin::Pin::new(&mut b.kill).poll(cx).is_ready() {
                                    b.skip = true;
                                    return std::task::Poll::Ready(b.seq);
                                }
                            }
                            std::task::Poll::Pending
                        });
                        let skipped = tokio::select! {
                            read = &mut read => break read.map(|()| None),
                            after = &mut deadline => break Ok(Some(End::TimedOut(after))),
                            _ = &mut task.kill, if !task.skip => break Ok(Some(End::Cancelled)),
                            _ = shutdown.wait_for(|closed| *closed) => break Ok(Some(End::Closed)),
                            skipped = skip => skipped,
                        };
                        // A small line into a pipe with room (pool.rs): never blocks.
                        let line = format!("{{\"skip\":{skipped}}}\n");
                        if let Err(e) = self.stdin.write_all(line.as_bytes()).await {
                            tracing::debug!(pid, error = %e, "cannot send a skip");
                        }
                    }
                };
                match ended {
                    Ok(Some(end)) => end,
                    Ok(None) => End::Replied(parse(&self.line)),
                    Err(broken) => End::Replied(Err(broken)),
                }
            }
        };
        let job = task.job_id.as_str();
        match end {
            End::Replied(Ok(Reply::Skipped { seq: got })) if task.skip && got == seq => {
                (Err(PythonError::Cancelled), true)
            }
            End::Replied(Ok(reply)) => self.judge(reply, seq),
            End::Replied(Err(Broken::Lost(detail))) => {
                let (status, signal) = self.exit_signal().await;
                // Its job's processes still in its group go with it.
                reap::kill_group(pid);
                tracing::warn!(pid, job, %detail, %status, "python worker died during a job");
                let error = match signal {
                    Some(SIGXCPU) => PythonError::ResourceLimit {
                        message: format!("CPU time limit ({status})"),
                        traceback: String::new(),
                        output: String::new(),
                    },
                    Some(SIGXFSZ) => PythonError::ResourceLimit {
                        message: format!("file size limit ({status})"),
                        traceback: String::new(),
                        output: String::new(),
                    },
                    _ => PythonError::WorkerDied { detail: status },
                };
                (Err(error), false)
            }
            End::Replied(Err(Broken::Garbled(detail))) => {
                tracing::error!(pid, job, %detail, "python worker broke the protocol");
                (Err(PythonError::Protocol { detail }), false)
            }
            End::TimedOut(_) if task.skip => {
                tracing::info!(
                    pid,
                    job,
                    "cancelled python job started before its skip; killing its worker"
                );
                (Err(PythonError::Cancelled), false)
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

    /// Reads the ready line.
    async fn read_reply(&mut self) -> Result<Reply, Broken> {
        self.line.clear();
        let limit = self.line_limit as u64;
        read_line(&mut self.stdout, &mut self.line, limit).await?;
        parse(&self.line)
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
                    FailureKind::Resource => PythonError::ResourceLimit {
                        message,
                        traceback,
                        output,
                    },
                    FailureKind::TooLarge => PythonError::OutputTooLarge { message, output },
                    FailureKind::Internal => {
                        tracing::error!(pid = self.pid, %message, %traceback, "python worker error");
                        PythonError::Protocol { detail: message }
                    }
                };
                (Err(error), true)
            }
            Reply::Ready { .. } => out_of_step(None),
            Reply::Skipped { seq: got } => out_of_step(Some(got)),
        }
    }

    /// The exit status of a worker whose pipes closed, killing it if it lingers.
    async fn exit_status(&mut self) -> String {
        self.exit_signal().await.0
    }

    /// The exit status as text, and the signal that ended the worker, if one did.
    async fn exit_signal(&mut self) -> (String, Option<i32>) {
        use std::os::unix::process::ExitStatusExt;
        match tokio::time::timeout(EXIT_STATUS_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.reaped = true;
                (status.to_string(), status.signal())
            }
            Ok(Err(e)) => (format!("exit status unknown: {e}"), None),
            Err(_) => {
                self.kill_tree();
                (
                    "pipes closed but the process lingered; killed".to_owned(),
                    None,
                )
            }
        }
    }

    /// Kills the worker, its process group and every descendant (see [`crate::reap`]).
    fn kill_tree(&mut self) {
        if self.reaped || matches!(self.child.try_wait(), Ok(Some(_))) {
            self.reaped = true;
            return;
        }
        let others = reap::kill_tree(self.pid);
        if others > 0 {
            tracing::info!(
                pid = self.pid,
                others,
                "killed the processes a python job left"
            );
        }
    }

    /// Kills the worker and everything it started, and reaps it, so it is really gone when
    /// this returns.
    pub(crate) async fn kill(mut self) {
        self.kill_tree();
        if self.reaped {
            return;
        }
        if let Err(e) = self.child.kill().await {
            tracing::warn!(pid = self.pid, error = %e, "cannot kill python worker");
        }
        self.reaped = true;
    }
}

impl Drop for Worker {
    /// A worker dropped without [`Worker::kill`] (the pool itself dropped) takes the
    /// processes of its job with it; `kill_on_drop` then reaps it.
    fn drop(&mut self) {
        self.kill_tree();
    }
}

/// Reads one reply line of at most `limit` bytes into `line` (a longer one breaks the
/// protocol: the worker caps what it sends, so only a job writing to the protocol pipe gets
/// here). Kept across `select!` rounds: what was read stays in `line`.
async fn read_line(
    stdout: &mut BufReader<ChildStdout>,
    line: &mut Vec<u8>,
    limit: u64,
) -> Result<(), Broken> {
    let room = limit.saturating_sub(line.len() as u64);
    match stdout.take(room).read_until(b'\n', line).await {
        Ok(0) => Err(Broken::Lost("its stdout closed".to_owned())),
        Ok(_) if line.last() != Some(&b'\n') && line.len() as u64 >= limit => {
            Err(Broken::Garbled(format!("reply longer than {limit} bytes")))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(Broken::Lost(format!("cannot read its reply: {e}"))),
    }
}

/// A reply line as a [`Reply`].
fn parse(line: &[u8]) -> Result<Reply, Broken> {
    serde_json::from_slice(line).map_err(|e| {
        let start: String = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        Broken::Garbled(format!("unreadable reply ({e}): {start}"))
    })
}

/// Longest stderr line logged as one entry; longer lines are logged in pieces, so a job
/// writing without newlines cannot make the provider buffer it all.
const STDERR_LINE_LIMIT: u64 = 8 << 10;

/// Forwards a worker's stderr (tracebacks of its own, output of child processes) to the log.
async fn log_stderr(stderr: ChildStderr, pid: u32) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(STDERR_LINE_LIMIT)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::debug!(pid, "python stderr: {}", text.trim_end());
            }
            Err(e) => {
                tracing::debug!(pid, error = %e, "cannot read python stderr");
                break;
            }
        }
    }
}
