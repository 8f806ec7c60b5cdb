//! Gleitzeit queue-manager: owns workflow and task state.
//!
//! It persists every workflow in the store ([`gleitzeit_store`]), asks the
//! dependency-resolver which tasks are ready, keeps ready tasks in a priority queue (urgent >
//! high > normal > low, FIFO within a priority), hands them to execution-engines that ask
//! with `lease_tasks` (long poll), records outcomes once per attempt, schedules retries with
//! backoff, skips dependents of failed tasks, and finishes workflows. On start it resumes
//! every unfinished workflow from the store.
//!
//! Consumes: `workflow_submit`, `workflow_get`, `workflow_list`, `workflow_cancel`,
//! `task_get`, `store_status`, `lease_tasks`, `task_outcomes`, `ping`, `shutdown`.
//! Emits: `workflow_plan`, `tasks_finished`, `workflow_forget` (to the resolver),
//! `cancel_tasks` (to engines), and the client events `workflow_*` / `task_*` to the rooms
//! `events` and `workflow:<id>`.

#![forbid(unsafe_code)]

mod clocks;
mod events_log;
mod manager;
mod queue;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_hub_client::{
    connect_component, next_envelope, registration, ClientConfig, ClientError,
};
use gleitzeit_protocol::events::component_types;
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
        vec!["workflow_store".into()],
        0,
        json!({ "store": info }),
    );
    let Some((client, mut incoming)) =
        connect_component(ClientConfig::component(config.hub_url, reg), &shutdown).await?
    else {
        return Ok(());
    };
    if let Err(e) = client
        .subscribe(&[gleitzeit_protocol::events::rooms::COMPONENTS.to_string()])
        .await
    {
        tracing::warn!(error = %e, "could not join the components room: work of lost engines is requeued only on restart");
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut mgr = manager::Manager::new(
        store,
        client.clone(),
        tx,
        config.provider_grace,
        config.lease_timeout,
        config.limits,
    );
    mgr.recover().await?;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last_report = std::time::Instant::now();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            env = next_envelope(&client, &mut incoming, &shutdown) => match env {
                Some(env) => mgr.on_envelope(env).await,
                None => break,
            },
            Some(msg) = rx.recv() => mgr.on_internal(msg).await,
            _ = tick.tick() => {
                mgr.on_tick().await;
                if last_report.elapsed() > Duration::from_secs(5) {
                    last_report = std::time::Instant::now();
                    // The store's health travels with the heartbeat (`gz status` shows it).
                    client.set_metadata(json!({ "store": mgr.store_info() }));
                }
            }
        }
    }
    client.close().await;
    Ok(())
}
