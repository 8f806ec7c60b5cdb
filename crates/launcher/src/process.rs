//! A child process started through [`Launch`]: its output goes to a log file, it is
//! stopped by the pid it was started with (never by name), and it is killed and reaped on
//! drop (a failing test leaves nothing behind) unless it was [`Process::detach`]ed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::LaunchError;

/// How often a wait looks at the child again.
const POLL: Duration = Duration::from_millis(10);

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_removed: Vec<OsString>,
    cwd: Option<PathBuf>,
    log: PathBuf,
    detached: bool,
}

impl Launch {
    /// `program`, called `name` in errors, logging to `log` (created or truncated).
    pub fn new(
        name: impl Into<String>,
        program: impl Into<PathBuf>,
        log: impl Into<PathBuf>,
    ) -> Self {
        Launch {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_removed: Vec::new(),
            cwd: None,
            log: log.into(),
            detached: false,
        }
    }

    /// The workspace binary `binary` (see [`crate::binary`]).
    pub fn binary(
        name: impl Into<String>,
        binary: &str,
        log: impl Into<PathBuf>,
    ) -> Result<Self, LaunchError> {
        Ok(Self::new(name, crate::binary(binary)?, log))
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// One environment variable (the rest is inherited).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// One inherited environment variable the child must not see.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_removed.push(key.into());
        self
    }

    /// The working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// In a process group of its own, so the terminal's Ctrl-C does not reach it (`gz start
    /// --detach`); [`Process::detach`] then leaves it running.
    pub fn own_process_group(mut self) -> Self {
        self.detached = true;
        self
    }

    /// Starts it.
    pub fn spawn(self) -> Result<Process, LaunchError> {
        let io = |source| LaunchError::Io {
            path: self.log.clone(),
            source,
        };
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let log = std::fs::File::create(&self.log).map_err(io)?;
        let err_log = log.try_clone().map_err(io)?;
        let mut cmd = Command::new(&self.program);
        for key in &self.env_removed {
            cmd.env_remove(key);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log));
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if self.detached {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            name: self.name.clone(),
            source,
        })?;
        Ok(Process {
            name: self.name,
            log: self.log,
            child: Some(child),
            status: None,
        })
    }
}

/// Signals a test may send (pause and resume a process, or stop it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGTERM: stop cleanly.
    Term,
    /// SIGKILL.
    Kill,
    /// SIGSTOP: freeze.
    Stop,
    /// SIGCONT: thaw.
    Cont,
}

impl From<Sig> for Signal {
    fn from(s: Sig) -> Signal {
        match s {
            Sig::Term => Signal::TERM,
            Sig::Kill => Signal::KILL,
            Sig::Stop => Signal::STOP,
            Sig::Cont => Signal::CONT,
        }
    }
}

/// A started child; killed and reaped when dropped, unless detached.
#[derive(Debug)]
pub struct Process {
    name: String,
    log: PathBuf,
    child: Option<Child>,
    status: Option<ExitStatus>,
}

impl Process {
    /// What it is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file (stdout and stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its pid (0 once it has been reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends `sig` to the pid this process was started with (nothing once it was reaped).
    pub fn signal(&self, sig: Sig) {
        if let Some(pid) = self
            .child
            .as_ref()
            .and_then(|c| Pid::from_raw(c.id() as i32))
        {
            let _ = kill_process(pid, sig.into());
        }
    }

    /// How it ended, if it did (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                self.status = Some(status);
            }
        }
        self.status
    }

    /// True while it runs.
    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.try_status().is_none()
    }

    /// Waits up to `limit` for it to exit by itself, blocking this thread; `None`: it
    /// still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(done) = self.exit_by(deadline) {
                return done;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Like [`Process::wait_exit`], without blocking the async runtime.
    pub async fn wait_exit_async(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(done) = self.exit_by(deadline) {
                return done;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look of a wait for the exit: `Some(status)` when the wait is over (`None` inside:
    /// it still runs at the deadline, or there is no child), `None` to look again later.
    fn exit_by(&mut self, deadline: Instant) -> Option<Option<ExitStatus>> {
        if let Some(status) = self.try_status() {
            return Some(Some(status));
        }
        (self.child.is_none() || Instant::now() >= deadline).then_some(None)
    }

    /// SIGTERM, then waits up to `limit` (blocking) for the exit; `None`: it still runs.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.signal(Sig::Term);
        self.wait_exit(limit)
    }

    /// Stops it for good: SIGTERM, up to `grace` to exit, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) {
        self.signal(Sig::Term);
        if self.wait_exit_async(grace).await.is_none() {
            self.kill();
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }

    /// Leaves it running beyond this handle (`gz start --detach`); its pid.
    pub fn detach(mut self) -> u32 {
        let pid = self.pid();
        // Dropping a `Child` neither kills nor waits: the process lives on.
        self.child = None;
        pid
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A log file name in `dir` for a child called `name`, unique within this process (and
/// across processes sharing `dir`): `<name>-<our pid>-<n>.log`.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{name}-{}-{n}.log", std::process::id()))
}
