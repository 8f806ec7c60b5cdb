//! [`StoreError`]: everything a [`Store`](crate::Store) operation can fail with.
//!
//! The variants are backend-neutral: a backend's own error (SQLite, Redis, ...) is carried
//! as a boxed `cause`, so callers never depend on a backend crate.

use std::path::PathBuf;

use gleitzeit_protocol::errors::{ErrorCode, GzError};

/// Boxed error of a storage backend.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed store operation. [`StoreError::Unavailable`] maps to the protocol code `GZ1001`
/// ("Redis connection failed"), every other variant to `GZ5001` ("Storage operation
/// failed"), see [`StoreError::code`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store's directory could not be created.
    #[error("cannot create the store directory {}: {cause}", path.display())]
    Io {
        /// The directory that could not be created.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },

    /// The backend failed (I/O error, database locked for too long, disk full, ...).
    #[error("storage backend failed ({operation}): {cause}")]
    Backend {
        /// What the store was doing, e.g. `"insert task"`.
        operation: &'static str,
        /// The backend's own error.
        cause: BackendError,
    },

    /// [`Store::create_workflow`](crate::Store::create_workflow) was given an id that is
    /// already stored.
    #[error("workflow `{id}` already exists")]
    AlreadyExists {
        /// The duplicate workflow id.
        id: String,
    },

    /// An idempotency key was submitted again with a different submission (protocol code
    /// `GZ3031`).
    #[error("idempotency key `{key}` was already used for workflow `{workflow_id}` with a different spec")]
    IdempotencyConflict {
        /// The key.
        key: String,
        /// The workflow the key created first.
        workflow_id: String,
    },

    /// Tasks were written for a workflow that is not stored.
    #[error("workflow `{id}` does not exist")]
    UnknownWorkflow {
        /// The missing workflow id.
        id: String,
    },

    /// The records handed to the store are inconsistent (e.g. a task whose `workflow_id`
    /// differs from its workflow's id, a duplicate task id, a number too large to store).
    #[error("invalid record: {0}")]
    Invalid(String),

    /// Data read from the store is not what it should be (unknown status, broken JSON,
    /// negative time, wrong column type, ...).
    #[error("corrupt data in the store: {0}")]
    Corrupt(String),

    /// The store's server (Redis) cannot be reached: connecting failed, or the connection
    /// broke and reconnecting failed too. The message names the server's URL (any password
    /// masked) and the cause. Protocol code `GZ1001`.
    #[error("store unavailable: {0}")]
    Unavailable(String),

    /// The store was written by a newer version of Gleitzeit.
    #[error("store schema version {found} is newer than the supported version {supported}")]
    UnsupportedSchema {
        /// The version found in the store.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
}

impl StoreError {
    /// The protocol error code: `GZ1001` (Redis connection failed, retryable) for
    /// [`StoreError::Unavailable`], `GZ3031` for [`StoreError::IdempotencyConflict`],
    /// `GZ5001` (storage operation failed, retryable) for every other variant.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Unavailable(_) => ErrorCode::RedisUnavailable,
            StoreError::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            _ => ErrorCode::StoreFailed,
        }
    }

    /// Wraps a backend error with what the store was doing.
    pub fn backend(operation: &'static str, cause: impl Into<BackendError>) -> Self {
        StoreError::Backend {
            operation,
            cause: cause.into(),
        }
    }
}

impl From<StoreError> for GzError {
    /// The error as it goes on the wire: its catalog code and message.
    fn from(e: StoreError) -> Self {
        GzError::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_but_unavailable_has_code_gz5001() {
        let errors = [
            StoreError::AlreadyExists { id: "wf".into() },
            StoreError::Corrupt("x".into()),
            StoreError::backend("open", "boom"),
        ];
        for err in errors {
            assert_eq!(err.code(), ErrorCode::StoreFailed);
        }
        let unavailable = StoreError::Unavailable("Redis at redis://h:6379/: refused".into());
        assert_eq!(unavailable.code(), ErrorCode::RedisUnavailable);
        assert_eq!(
            unavailable.to_string(),
            "store unavailable: Redis at redis://h:6379/: refused"
        );
    }

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            StoreError::backend("insert task", "disk full").to_string(),
            "storage backend failed (insert task): disk full"
        );
        assert_eq!(
            StoreError::AlreadyExists { id: "wf-1".into() }.to_string(),
            "workflow `wf-1` already exists"
        );
    }

    #[test]
    fn store_error_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<StoreError>();
    }
}
