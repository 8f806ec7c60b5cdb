//! Gleitzeit queue-manager: owns workflow and task state.
//!
//! It persists every workflow in the store ([`gleitzeit_store`]), asks the
//! dependency-resolver which tasks are ready, keeps ready tasks in a priority queue (urgent >
//! high > normal > low, FIFO within a priority), hands them to execution-engines that ask
//! with `lease_tasks` (long poll), records outcomes once per attempt, schedules retries with
//! backoff, skips dependents of failed tasks, and finishes workflows. On start it resumes
//! every unfinished workflow from the store.
//!
//! Consumes (see `manager.rs`, `Manager::on_envelope`): `workflow_submit`, `workflow_get`,
//! `workflow_list`, `workflow_cancel`, `workflow_events`, `workflow_owner`, `task_get`,
//! `store_status`, `lease_tasks`, `task_outcomes`, `tasks_held`, `component_left` (from the
//! hub only), and `ping`/`shutdown`/`metrics` (the shared component loop; the figures come
//! from `machine/metrics.rs`).
//!
//! Every task and workflow status change happens in `machine/` (the life cycle, unit-tested
//! with paused time); `manager/` stores each step before it is applied and sends what
//! follows.
//! Emits: `workflow_plan`, `tasks_finished`, `workflow_forget` (to the resolver),
//! `cancel_tasks` (to engines), and the client events `workflow_*` / `task_*` to the rooms
//! `events` and `workflow:<id>`.

#![forbid(unsafe_code)]

mod clocks;
mod events_log;
mod machine;
mod manager;
mod queue;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_component::{run_component, Component, Events, Every};
use gleitzeit_hub_client::{connect_component, registration, ClientConfig, ClientError, HubClient};
use gleitzeit_protocol::events::component_types;
use gleitzeit_protocol::Envelope;
use gleitzeit_runtime::Shutdown;
use gleitzeit_store::{RedisStore, SqliteStore, Store, StoreError};
use serde_json::json;
use tokio::sync::mpsc;

pub use manager::{Internal, WorkflowLimits};

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `queue-manager-<random>`).
    pub component_id: Option<String>,
    /// Folder of the embedded store.
    pub data_dir: PathBuf,
    /// Queued tasks of a method that no engine offers for this long fail with GZ2015.
    pub provider_grace: Duration,
    /// Keep state in Redis at this URL instead of the embedded store.
    pub redis_url: Option<String>,
    /// An engine that sends nothing (no lease request, outcome or held-task report) for
    /// this long while holding tasks loses them: they are queued again.
    pub lease_timeout: Duration,
    /// How large a submitted workflow may be (tasks, bytes); larger ones get GZ7012.
    pub limits: WorkflowLimits,
    /// The API key to present (`None`: from the environment, the saved login or the local
    /// suite's key; see `gleitzeit_runtime::credentials`).
    pub api_key: Option<String>,
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub connection failed for good.
    #[error(transparent)]
    Hub(#[from] ClientError),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unfinished workflows could not be read back from the store.
    #[error("resuming unfinished workflows: {0}")]
    Resume(gleitzeit_protocol::errors::GzError),
}

/// Opens the store, connects, resumes unfinished workflows and serves until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let store: Arc<dyn Store> = match &config.redis_url {
        Some(url) => Arc::new(RedisStore::open(url)?),
        None => Arc::new(SqliteStore::open(&config.data_dir.join("gleitzeit.db"))?),
    };
    tracing::info!(store = ?store.info(), "store opened");
    let ty = component_types::QUEUE_MANAGER;
    let id = config
        .component_id
        .unwrap_or_else(|| gleitzeit_runtime::default_component_id(ty));
    let info = store.info();
    let reg = registration(
        ty,
        id,
        // `lease_with_outcomes`: engines may send their next lease request inside
        // `task_outcomes` (`TaskOutcomes::lease`).
        vec!["workflow_store".into(), "lease_with_outcomes".into()],
        0,
        json!({ "store": info }),
    );
    let Some((client, incoming)) = connect_component(
        ClientConfig::component(config.hub_url, reg)
            .with_optional_api_key(config.api_key.as_deref()),
        &shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    if let Err(e) = client
        .subscribe(&[gleitzeit_protocol::events::rooms::COMPONENTS.to_string()])
        .await
    {
        tracing::warn!(error = %e, "could not join the components room: work of lost engines is requeued only on restart");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut mgr = manager::Manager::new(
        store.clone(),
        client.clone(),
        tx,
        config.provider_grace,
        config.lease_timeout,
        config.limits,
    );
    if let Err(e) = mgr.recover().await {
        return Err(ServiceError::Resume(e));
    }
    let mut service = Service {
        mgr,
        store,
        client: client.clone(),
        report: Every::new(STORE_REPORT),
    };
    let events = Events::new(client.clone(), incoming)
        .internal(rx)
        .tick(TICK);
    run_component(&mut service, events, &shutdown).await;
    client.close().await;
    Ok(())
}

/// How often the manager's clock runs (timers, renewals).
const TICK: Duration = Duration::from_millis(50);
/// How often the store's health travels with the heartbeat (`gz status` shows it).
const STORE_REPORT: Duration = Duration::from_secs(5);

/// The queue-manager on the shared component loop.
struct Service {
    mgr: manager::Manager,
    store: Arc<dyn Store>,
    client: HubClient,
    report: Every,
}

impl Component for Service {
    type Internal = Internal;

    async fn on_envelope(&mut self, env: Envelope) {
        self.mgr.on_envelope(env).await;
    }

    async fn on_internal(&mut self, msg: Internal) {
        self.mgr.on_internal(msg).await;
    }

    async fn on_idle(&mut self) {
        self.mgr.on_idle().await;
    }

    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        self.mgr.idle_deadline()
    }

    fn metrics(&self) -> Vec<gleitzeit_protocol::metrics::MetricFamily> {
        self.mgr.metrics()
    }

    async fn on_tick(&mut self) {
        self.mgr.on_tick().await;
        if self.report.due() {
            // Asking the store may block (a Redis PING), so it runs off this thread.
            let (store, client) = (self.store.clone(), self.client.clone());
            tokio::task::spawn_blocking(move || {
                client.set_metadata(json!({ "store": store.info() }));
            });
        }
    }
}

impl Config {
    /// A queue-manager for tests: the embedded store in `data_dir`, presenting `api_key` to
    /// the hub at `hub_url`; the binary's defaults otherwise.
    pub fn for_tests(hub_url: &str, api_key: &str, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            hub_url: hub_url.to_string(),
            component_id: None,
            data_dir: data_dir.into(),
            provider_grace: Duration::from_secs(30),
            redis_url: None,
            lease_timeout: Duration::from_secs(15),
            limits: WorkflowLimits::default(),
            api_key: Some(api_key.to_string()),
        }
    }
}
