//! The store, off the thread that carries the hub connection: calls run on tokio's
//! blocking pool and are awaited, so heartbeats and the hub link never wait on Redis or a
//! large SQLite write. The one exception is a small step on the embedded store (at most
//! [`INLINE_RECORDS`] records, a transaction of well under a millisecond), written on the
//! calling thread: handing it to the pool and back cost more than the write (two thread
//! switches per step). A step's records are written in one transaction; while the store is
//! unreachable (GZ1001) the write waits and retries, holding the step, so nothing is
//! acknowledged or announced before it is stored.

use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_store::{Store, StoreError};
use tracing::{info, warn};

use crate::machine::Step;

/// The longest pause between attempts to write while the store is unreachable.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// The queue-manager's store.
#[derive(Clone)]
pub(crate) struct Persistence {
    store: Arc<dyn Store>,
    /// Steps of at most this many records are written on the calling thread (the embedded
    /// store: a small SQLite transaction costs less than handing it to another thread);
    /// 0 for a store over the network.
    inline_up_to: usize,
}

/// The largest step the embedded store writes on the calling thread.
const INLINE_RECORDS: usize = 64;

impl Persistence {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        let inline_up_to = if store.info().kind == "sqlite" {
            INLINE_RECORDS
        } else {
            0
        };
        Persistence {
            store,
            inline_up_to,
        }
    }

    /// Runs `f` against the store on the blocking pool.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, GzError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| GzError::new(ErrorCode::Internal, format!("store call failed: {e}")))?
            .map_err(GzError::from)
    }

    /// Runs `f` on the blocking pool without waiting for it (its failure is logged).
    pub(crate) fn spawn(
        &self,
        what: &'static str,
        f: impl FnOnce(&dyn Store) -> Result<(), StoreError> + Send + 'static,
    ) {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = f(store.as_ref()) {
                warn!(error = %e, "{what} failed");
            }
        });
    }

    /// Stores a step's records in one transaction and hands the step back with the result.
    /// While the store is unreachable this waits (the queue-manager takes no new work
    /// meanwhile and keeps what it holds); other errors are returned.
    pub(crate) async fn store(&self, mut step: Step) -> (Step, Result<(), GzError>) {
        if step.nothing_to_store() {
            return (step, Ok(()));
        }
        let (workflows, tasks) = step.records();
        if workflows.len() + tasks.len() <= self.inline_up_to {
            let result = apply(self.store.as_ref(), &step);
            if let Err(e) = &result {
                warn!(code = %e.code, error = %e.message, "could not persist changes; nothing was applied or acknowledged");
            }
            return (step, result);
        }
        let mut pause = Duration::from_millis(100);
        let mut warned = false;
        loop {
            let store = self.store.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let result = apply(store.as_ref(), &step);
                (step, result)
            })
            .await;
            let (back, result) = match joined {
                Ok(pair) => pair,
                Err(e) => {
                    // The closure cannot panic past catch_unwind; a cancelled runtime ends here.
                    let err = GzError::new(ErrorCode::Internal, format!("store write lost: {e}"));
                    return (Step::default(), Err(err));
                }
            };
            step = back;
            match result {
                Ok(()) => {
                    if warned {
                        info!("store reachable again; resuming");
                    }
                    return (step, Ok(()));
                }
                Err(e) if e.is(ErrorCode::RedisUnavailable) => {
                    if !warned {
                        warn!(code = %e.code, error = %e.message, "store unreachable: holding work until it is back");
                        warned = true;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Err(e) => {
                    warn!(code = %e.code, error = %e.message, "could not persist changes; nothing was applied or acknowledged");
                    return (step, Err(e));
                }
            }
        }
    }
}

/// Writes a step's records in one transaction (a panic in the store becomes an error).
fn apply(store: &dyn Store, step: &Step) -> Result<(), GzError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let (workflows, tasks) = step.records();
        store.apply(workflows, tasks).map_err(GzError::from)
    }))
    .unwrap_or_else(|_| {
        Err(GzError::new(
            ErrorCode::Internal,
            "the store write panicked",
        ))
    })
}
