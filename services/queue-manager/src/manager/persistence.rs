//! The store, off the thread that carries the hub connection: every call runs on tokio's
//! blocking pool and is awaited, so heartbeats and the hub link never wait on Redis or
//! SQLite. A step's records are written in one transaction; while the store is unreachable
//! (GZ1001) the write waits and retries, holding the step, so nothing is acknowledged or
//! announced before it is stored.

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
}

impl Persistence {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Persistence { store }
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
        let mut pause = Duration::from_millis(100);
        let mut warned = false;
        loop {
            let store = self.store.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let (workflows, tasks) = step.records();
                    store.apply(workflows, tasks)
                }));
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
            let result = match result {
                Ok(r) => r.map_err(GzError::from),
                Err(_) => Err(GzError::new(
                    ErrorCode::Internal,
                    "the store write panicked",
                )),
            };
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
