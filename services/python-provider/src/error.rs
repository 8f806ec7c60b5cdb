//! Why a python job failed, and how each failure maps to a Gleitzeit error code.

use std::time::Duration;

use gleitzeit_protocol::errors::ErrorCode;

/// Why a job failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PythonError {
    /// The job itself is malformed (e.g. both or neither of `code` and `file`).
    #[error("invalid python job: {0}")]
    InvalidJob(String),
    /// The script file or the working directory does not exist or cannot be read.
    #[error("{0}")]
    NotFound(String),
    /// A `file` or `cwd` path resolves outside the allowed roots (checked before anything is
    /// read; see [`crate::confine`]).
    #[error("{0}")]
    PathEscape(String),
    /// The code does not compile; `detail` says where (inline code: with the line and a caret;
    /// script files: file, line and column only, never their contents).
    #[error("python syntax error:\n{detail}")]
    Syntax {
        /// Last line of the report, e.g. `SyntaxError: invalid syntax`.
        message: String,
        /// Line number in the code or script.
        line: Option<u32>,
        /// Where and what.
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
    /// The job hit a resource limit: memory (`MemoryError`), file size (`EFBIG`), processes
    /// (`EAGAIN` on fork) or CPU time (the worker was killed by `SIGXCPU`).
    #[error("python job exceeded a resource limit: {message}")]
    ResourceLimit {
        /// Which limit, and how it showed.
        message: String,
        /// The traceback, when the limit surfaced as an exception.
        traceback: String,
        /// What the code printed before.
        output: String,
    },
    /// The job printed or returned more than the provider's output limit.
    #[error("python job output too large: {message}")]
    OutputTooLarge {
        /// What was too large, and the limit.
        message: String,
        /// The start of the output (at most 64 KiB), ending with a `…[truncated N bytes]` marker.
        output: String,
    },
    /// The job ran longer than its timeout; its worker was killed and replaced.
    #[error(
        "python job timed out after {after:?}; its worker and every process it started were killed"
    )]
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
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidJob(_) => ErrorCode::InvalidField,
            Self::NotFound(_) => ErrorCode::PythonNotFound,
            Self::PathEscape(_) => ErrorCode::SecurityViolation,
            Self::Syntax { .. } => ErrorCode::PythonSyntax,
            Self::Script { .. } => ErrorCode::PythonException,
            Self::OutputTooLarge { .. } => ErrorCode::OutputTooLarge,
            Self::ResourceLimit { .. } => ErrorCode::ResourceLimit,
            Self::Timeout { .. } => ErrorCode::TaskTimeout,
            Self::Cancelled => ErrorCode::Cancelled,
            Self::WorkerDied { .. } | Self::Protocol { .. } => ErrorCode::TaskFailed,
            Self::Spawn { .. } => ErrorCode::Internal,
            Self::Closed => ErrorCode::ShuttingDown,
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
