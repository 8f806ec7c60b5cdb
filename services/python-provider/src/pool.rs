//! A warm pool of Python worker processes that run `python/execute` jobs.
//!
//! Each worker is a long-lived `python3 -c <worker.py>` that reads one JSON request line per
//! job and answers with one JSON reply line (the protocol is described at the top of
//! `worker.py`; the process side is [`crate::worker`]). Starting an interpreter costs
//! 11–16 ms, a warm worker with cached compiled code runs a trivial job in well under a
//! millisecond, hence the pool.
//!
//! Every worker is owned by an actor task. Jobs wait in one FIFO queue; a free actor takes the
//! next job, sends it to its worker and waits for the reply, the job's timeout, a cancellation
//! or pool shutdown, whichever comes first. On anything but a reply the worker is stopped and
//! SIGKILLed with its process group and every process its job started ([`crate::reap`]),
//! reaped, and replaced by a fresh one, so a job that misbehaves never outlives its failure.
//!
//! Pipelined: when more jobs wait and no other worker is free, the actor also sends the next
//! ones, to wait in its worker's pipe (only after a quick job, only small requests, and only
//! as many as the slot's recent jobs ran in [`PIPELINE_WINDOW`], at most [`PIPELINE_DEPTH`]):
//! the worker starts each the moment the one before ends, instead of sleeping until the reply
//! has reached the pool and the next request come back (that round trip cost a trivial job
//! more than the job itself: 134 against 58 µs of worker CPU). A job's timeout starts when it
//! starts. If its caller cancels it while it waits, the worker is told to skip it (a `skip`
//! line, looked for before a job starts unless the worker read its pipe within the last half
//! millisecond, `LOOK_AGAIN` in `worker.py`) and it never runs; if a job before it fails its
//! worker, it goes to the replacement.
//! Workers are also killed when the pool is dropped, exit on their own when their stdin
//! closes, and within a second of the pool's process dying.
//!
//! Confinement (`docs/python-confinement.md`): `file` and `cwd` must resolve under the
//! allowed roots ([`crate::confine`]); every worker runs under the rlimits of
//! [`Limits`]; every job has a timeout ([`PoolConfig::default_timeout`] when it names none);
//! a job's reply is capped at [`Limits::max_output`] bytes; processes a job leaves behind are
//! killed when it ends.
//!
//! Job semantics, as seen by the Python code:
//! - `code` jobs run inline source; `file` jobs run a script (relative paths are resolved
//!   against [`PythonJob::base_dir`], else against the working directory), with the script's
//!   folder first on `sys.path` and `__file__` set; `code` jobs get the working directory
//!   first on `sys.path`, like `python -c`.
//! - The working directory is [`PythonJob::cwd`] (relative to `base_dir` when relative and a
//!   `base_dir` is given), else `base_dir` when it lies under the roots, else
//!   [`PoolConfig::default_cwd`], else the directory the pool was started in. Every job
//!   starts there, wherever the job before it went.
//! - Every job runs in a fresh `__main__` module holding `context`, so jobs never see each
//!   other's variables. Imported modules are shared: workers are warm interpreters.
//! - The job's answer is the variable `result` (`None` when unset). What the code prints via
//!   `sys.stdout` is returned as `output`; lower-level writes to file descriptor 1 (and the
//!   output of child processes) go to the worker's stderr, which is logged at debug level.
//! - `sys.exit()` / `sys.exit(0)` ends a job successfully; any other exit code is a failure.
//!
//! Error codes (see [`PythonError::code`]): GZ2025 script raised, GZ2024 syntax error, GZ2020
//! script file or working directory not found, GZ2023 path outside the roots, GZ2026 output
//! too large, GZ2027 resource limit, GZ2002 timeout, GZ2006 cancelled, GZ2001 worker died or
//! broke the protocol, GZ7001 invalid job, GZ8001 a worker cannot be started, GZ8002 pool
//! shut down.

use std::collections::VecDeque;
use std::future::Future;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::{JoinHandle, JoinSet};

pub use crate::confine::PathPolicy;
pub use crate::error::PythonError;
use crate::job::{encode_request, Placement};
pub use crate::job::{PythonJob, PythonOutcome};
pub use crate::limits::Limits;
use crate::worker::{Worker, WorkerSpec};

/// How the pool starts its workers.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Number of warm workers; 0 means one per CPU core.
    pub size: usize,
    /// The Python executable (a name looked up on `PATH`, or a path).
    pub python: String,
    /// Working directory of jobs that name none; `None` keeps the pool's own.
    pub default_cwd: Option<PathBuf>,
    /// Where `file` and `cwd` may point.
    pub paths: PathPolicy,
    /// Rlimits and the output cap of every job.
    pub limits: Limits,
    /// Timeout of jobs that name none; `None` lets them run without a limit.
    pub default_timeout: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            size: 0,
            python: "python3".to_owned(),
            default_cwd: None,
            paths: PathPolicy::new(&[crate::confine::default_data_dir()], true),
            limits: Limits::default(),
            default_timeout: Some(crate::limits::DEFAULT_TIMEOUT),
        }
    }
}

/// A pool of warm Python workers; cheap to clone, every clone drives the same workers.
#[derive(Clone)]
pub struct PythonPool {
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    paths: PathPolicy,
    /// Working directory of jobs without one, and base of their relative paths.
    home: PathBuf,
    default_timeout: Option<Duration>,
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
        let home = match &config.default_cwd {
            Some(dir) => std::path::absolute(dir),
            None => std::env::current_dir(),
        }
        .map_err(|e| PythonError::Spawn {
            python: config.python.clone(),
            detail: format!("no working directory for jobs: {e}"),
        })?;
        let spec = Arc::new(WorkerSpec {
            python: config.python,
            cwd: config.default_cwd,
            limits: config.limits,
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
                paths: config.paths,
                home,
                default_timeout: config.default_timeout,
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
        let timeout = job.timeout.or(self.shared.default_timeout);
        let place = Placement {
            policy: &self.shared.paths,
            default_cwd: &self.shared.home,
        };
        let request = encode_request(seq, &job, timeout, &place)?;
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (reply_tx, mut reply_rx) = oneshot::channel();
        let (kill_tx, kill_rx) = oneshot::channel();
        let task = Task {
            seq,
            job_id: job.id,
            request,
            timeout,
            state: Arc::clone(&state),
            reply: reply_tx,
            kill: kill_rx,
            skip: false,
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

/// Most bytes of requests sent to a worker while it runs another job (the running job's
/// request, when the worker has not read it yet, and the waiting ones'): with the skip lines
/// of the waiting jobs they fit in a pipe's buffer (64 KiB on Linux), so a send never waits
/// on a worker that is busy writing a large reply.
const PIPELINE_BYTES: usize = 16 * 1024;
/// A job is sent to wait behind a running one only when the slot's last job took less than
/// this: behind a long job it would wait while another worker may soon be free.
const PIPELINE_AFTER: Duration = Duration::from_millis(10);
/// Jobs wait in a worker's pipe for about this much of its recent jobs' run time: trivial
/// jobs go many at once (the worker never sleeps between them while the provider is busy
/// elsewhere), a job of a few milliseconds has one waiting behind it. A job that runs long
/// after quick ones holds back at most this much work another worker could have taken.
const PIPELINE_WINDOW: Duration = Duration::from_millis(2);
/// Most jobs waiting in one worker's pipe.
const PIPELINE_DEPTH: usize = 8;

/// How many jobs may wait behind the running one on a slot whose jobs took `mean` each
/// lately and whose last job took `last`.
fn pipeline_depth(mean: Duration, last: Duration) -> usize {
    if last >= PIPELINE_AFTER {
        return 0;
    }
    let per_job = mean.max(Duration::from_micros(1)).as_nanos();
    let fit = PIPELINE_WINDOW.as_nanos() / per_job;
    usize::try_from(fit)
        .unwrap_or(PIPELINE_DEPTH)
        .clamp(1, PIPELINE_DEPTH)
}

/// The mean run time of a slot's recent jobs (a moving average: each job weighs 1/8).
#[derive(Debug, Default)]
struct Pace {
    mean: Option<Duration>,
}

impl Pace {
    fn record(&mut self, took: Duration) {
        self.mean = Some(match self.mean {
            None => took,
            Some(mean) => (mean * 7 + took) / 8,
        });
    }

    /// Jobs that may wait behind the running one, after a job that took `last`.
    fn depth(&self, last: Duration) -> usize {
        pipeline_depth(self.mean.unwrap_or(last), last)
    }
}

/// Job states shared by the caller and the actor, so that exactly one of them decides the
/// fate of a job cancelled while it is still queued.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// A queued job.
pub(crate) struct Task {
    pub seq: u64,
    pub job_id: String,
    pub request: Vec<u8>,
    pub timeout: Option<Duration>,
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<Result<PythonOutcome, PythonError>>,
    /// Fires (or closes, when the caller went away) to have a running job's worker killed.
    pub kill: oneshot::Receiver<()>,
    /// Cancelled while it waited in its worker's pipe: the worker was told to skip it.
    pub skip: bool,
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

    /// Whether the caller of a claimed job asked for it to be killed (or went away).
    fn kill_requested(&mut self) -> bool {
        !matches!(
            self.kill.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        )
    }
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
        // The jobs taken next, oldest first, and whether each was sent to `worker` already
        // (to wait in its pipe behind the running job): the sent ones come first.
        let mut behind: VecDeque<(Task, bool)> = VecDeque::new();
        let mut pace = Pace::default();
        // How many jobs may wait behind the running one (none after a slow job).
        let mut depth = 1;
        loop {
            let (mut task, was_sent) = match behind.pop_front() {
                Some(next) => next,
                None => match self.next_task().await {
                    Some(t) if t.claim() => (t, false),
                    Some(_) => continue,
                    None => break,
                },
            };
            if *self.shutdown.borrow() {
                let _ = task.reply.send(Err(PythonError::Closed));
                continue;
            }
            if !was_sent && (task.skip || task.kill_requested()) {
                // Cancelled before it was sent anywhere: it never runs.
                let _ = task.reply.send(Err(PythonError::Cancelled));
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
            let sent = if was_sent {
                Ok(())
            } else {
                current.send(&task.request).await
            };
            if sent.is_ok() && task.request.len() <= PIPELINE_BYTES {
                self.pipeline(&mut current, &mut behind, depth).await;
            }
            self.busy.fetch_add(1, Ordering::Relaxed);
            let started = tokio::time::Instant::now();
            let (result, healthy) = current
                .finish(
                    &mut task,
                    sent,
                    behind.make_contiguous(),
                    &mut self.shutdown,
                )
                .await;
            let took = started.elapsed();
            pace.record(took);
            depth = pace.depth(took);
            if healthy {
                worker = Some(current);
            } else {
                current.kill().await;
                // The jobs behind never started: the replacement gets them (or, cancelled,
                // they are answered when taken).
                for (_, sent) in behind.iter_mut() {
                    *sent = false;
                }
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

    /// Takes further jobs, while they wait and no other worker is free for them (a free one
    /// holds the queue), until `depth` wait behind the running job, and sends them to
    /// `worker` to wait in its pipe: the worker starts each as soon as the one before is
    /// done, instead of sleeping until the reply has made the round trip. A job that would
    /// take the requests in the pipe past [`PIPELINE_BYTES`] is kept here, unsent, and sent
    /// when it is its turn; none is taken after it.
    async fn pipeline(
        &self,
        worker: &mut Worker,
        behind: &mut VecDeque<(Task, bool)>,
        depth: usize,
    ) {
        if behind.iter().any(|(_, sent)| !sent) {
            return;
        }
        let mut bytes: usize = behind.iter().map(|(t, _)| t.request.len()).sum();
        while behind.len() < depth {
            let next = {
                let Ok(mut queue) = self.queue.try_lock() else {
                    return;
                };
                let Ok(next) = queue.try_recv() else {
                    return;
                };
                next
            };
            if !next.claim() {
                continue;
            }
            bytes += next.request.len();
            if bytes > PIPELINE_BYTES {
                behind.push_back((next, false));
                return;
            }
            let sent = worker.send(&next.request).await.is_ok();
            behind.push_back((next, sent));
            if !sent {
                return;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn jobs_wait_in_the_pipe_for_about_the_window_of_recent_run_time() {
        // Trivial jobs: as many as allowed.
        assert_eq!(
            pipeline_depth(Duration::from_micros(30), Duration::from_micros(30)),
            8
        );
        assert_eq!(pipeline_depth(Duration::ZERO, Duration::ZERO), 8);
        // Jobs of half a millisecond: four cover the window.
        assert_eq!(pipeline_depth(MS / 2, MS / 2), 4);
        // Jobs of a few milliseconds: one waits behind, as always.
        assert_eq!(pipeline_depth(5 * MS, 5 * MS), 1);
        // After a slow job none waits, whatever came before.
        assert_eq!(pipeline_depth(Duration::from_micros(30), 10 * MS), 0);
    }

    #[test]
    fn the_pace_follows_recent_jobs() {
        let mut pace = Pace::default();
        assert_eq!(
            pace.depth(Duration::from_micros(50)),
            8,
            "first job: its own time"
        );
        pace.record(Duration::from_micros(50));
        assert_eq!(pace.depth(Duration::from_micros(50)), 8);
        // Jobs of a millisecond from now on: the depth comes down to two.
        for _ in 0..40 {
            pace.record(MS);
        }
        assert_eq!(pace.depth(MS), 2);
    }
}
