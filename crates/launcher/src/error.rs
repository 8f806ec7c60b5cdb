//! What can go wrong starting or waiting for a child.

use std::path::PathBuf;
use std::time::Duration;

/// Errors of the launcher.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A binary is not where it was looked for.
    #[error("{} not found: build every binary first (`cargo build --bins`)", path.display())]
    Missing {
        /// Where it was expected.
        path: PathBuf,
    },
    /// The process could not be started.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// What it is.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file (log, ready file) could not be made.
    #[error("{}: {source}", path.display())]
    Io {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The process exited before it was ready.
    #[error("{name} exited before it was ready ({status}); its log {}:\n{tail}", log.display())]
    Exited {
        /// What it is.
        name: String,
        /// How it ended.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
    /// The process did not become ready in time.
    #[error("{name} was not ready within {limit:?}; its log {}:\n{tail}", log.display())]
    NotReady {
        /// What it is.
        name: String,
        /// How long we waited.
        limit: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },
}
