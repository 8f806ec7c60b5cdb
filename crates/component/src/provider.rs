//! The [`Provider`] trait: what a provider supplies itself (who it is, how it runs one task,
//! optionally its load, a periodic refresh of its metadata, its metrics, and cleanup) —
//! everything else is [`crate::serve`].

use std::future::Future;
use std::time::Duration;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::metrics::MetricFamily;
use gleitzeit_protocol::payloads::ExecuteTask;
use gleitzeit_protocol::Target;
use serde_json::Value;
use tokio::sync::watch;

/// Who a provider is, as registered with the hub.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    /// Component type, e.g. `python-provider`.
    pub component_type: String,
    /// Methods served, e.g. `python/execute`.
    pub methods: Vec<String>,
    /// Tasks it runs at once (advertised; the engine sends up to capacity × prefetch).
    pub capacity: u32,
    /// Registration metadata (shown by the hub in `/components`).
    pub metadata: Value,
    /// Who bounds how many tasks run at once.
    pub concurrency: Concurrency,
}

/// Who bounds how many tasks run at once. Either way every task handed over is accepted
/// (held and reported): the engine never sends more than capacity × prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Every task goes to [`Provider::execute`] at once; the provider queues them itself
    /// (a worker pool, per-endpoint slots).
    Provider,
    /// At most `capacity` tasks are in [`Provider::execute`] at once; the others wait in
    /// the runtime (cancellable, and given back on shutdown without having started).
    Runtime,
}

/// A hub component that runs tasks. Implementors supply only their own logic; [`crate::serve`]
/// does registration, holdings, reports, outcomes, cancellation and draining.
pub trait Provider: Send + Sync + 'static {
    /// Registration data (asked once, when serving starts).
    fn info(&self) -> ProviderInfo;

    /// Runs one task. The result becomes the task's outcome (capped in size). A panic
    /// fails the task with GZ8001.
    ///
    /// On `cancel_tasks` the future is dropped, unless [`Provider::handles_cancel`] says the
    /// provider watches [`TaskContext::cancelled`] itself. Either way no outcome is sent
    /// for a cancelled task (the engine has forgotten it).
    fn execute(
        &self,
        task: ExecuteTask,
        ctx: TaskContext,
    ) -> impl Future<Output = Result<Value, GzError>> + Send;

    /// True if [`Provider::execute`] stops by itself once [`TaskContext::cancelled`] fires
    /// (e.g. to kill a worker process cleanly), so the runtime lets it finish.
    fn handles_cancel(&self) -> bool {
        false
    }

    /// The load reported with heartbeats; `None`: the tasks in `execute` right now.
    fn load(&self) -> Option<u32> {
        None
    }

    /// How often [`Provider::refresh`] runs (`None`: never). The first run is right after
    /// registering.
    fn refresh_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work such as health checks; metadata returned replaces the heartbeat's.
    fn refresh(&self) -> impl Future<Output = Option<Value>> + Send {
        async { None }
    }

    /// The provider's own metrics, answered to the hub's `metrics` request together with the
    /// runtime's (`gleitzeit_provider_slots`, `gleitzeit_provider_tasks_held`). None by
    /// default.
    fn metrics(&self) -> Vec<MetricFamily> {
        Vec::new()
    }

    /// Cleanup once serving stopped (after the drain): stop workers, close files.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a running task may use besides its parameters.
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) provider_id: String,
    pub(crate) engine: String,
    pub(crate) cancel: watch::Receiver<bool>,
    pub(crate) client: Option<HubClient>,
}

impl TaskContext {
    /// This provider's component id.
    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// The engine that sent the task.
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// True once the task was cancelled (or given up at the end of a drain).
    pub fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Completes once the task is cancelled; never completes otherwise.
    pub async fn cancelled(&self) {
        let mut rx = self.cancel.clone();
        if rx.wait_for(|c| *c).await.is_err() {
            // The runtime forgot the task without cancelling it: it will never be.
            std::future::pending::<()>().await;
        }
    }

    /// Sends an event through the hub (e.g. `task_progress` to a room); dropped when not
    /// connected to one (in-process tests).
    pub fn emit(&self, target: Target, event: &str, payload: Value) {
        if let Some(client) = &self.client {
            if let Err(e) = client.emit(target, event, payload) {
                tracing::debug!(error = %e, event, "could not emit");
            }
        }
    }
}
