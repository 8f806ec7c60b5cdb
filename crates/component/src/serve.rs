//! [`serve`]: a [`Provider`] as a hub component, from registration to the drain.
//!
//! Connects and registers (retrying until the hub answers or shutdown fires), then takes
//! `execute_tasks` (every task is accepted and held; see [`crate::provider::Concurrency`]),
//! `cancel_tasks`, answers `ping` and the hub's `metrics` (the runtime's figures and
//! [`Provider::metrics`]) and refuses other events with GZ7021, as every suite component
//! does. Held tasks are reported every two seconds, outcomes are batched per
//! engine, the load travels with the heartbeats, and [`Provider::refresh`] runs on its own
//! interval.
//!
//! On shutdown (the signal, or `shutdown` from the hub) it stops starting tasks and waits up
//! to [`ServeConfig::grace`] for the running ones, still answering `ping` and
//! `cancel_tasks`; then gives back what is left as GZ1031 outcomes (queued again at once,
//! without using up a retry), flushes the outcomes (and lets the hub route them, see
//! `settle`), deregisters, and calls [`Provider::shutdown`]. It stays registered while
//! draining: an engine that saw it leave would run its tasks again elsewhere while they
//! still run here.

use std::sync::Arc;
use std::time::Duration;

use gleitzeit_hub_client::{
    connect_component, next_envelope, registration, ClientConfig, ClientError, HubClient, Incoming,
};
use gleitzeit_protocol::errors::ErrorCode;
use gleitzeit_protocol::events;
use gleitzeit_protocol::requests::ProviderRequest;
use gleitzeit_protocol::{Envelope, Target};
use gleitzeit_runtime::Shutdown;
use serde_json::json;
use tracing::{info, warn};

use crate::outcomes::{spawn_held_reports, OutcomeSender};
use crate::provider::Provider;
use crate::tasks::Tasks;

/// How long running tasks may take to finish once shutdown begins, by default. Below the
/// 5 s `gz stop` allows before it kills what is left.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3);

/// How a provider serves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Hub URL (several comma-separated for a mesh).
    pub hub_url: String,
    /// Component id (default `<type>-<random>`).
    pub component_id: Option<String>,
    /// How long running tasks may take to finish once shutdown begins.
    pub grace: Duration,
    /// The API key to present (`None`: from the environment, the saved login or the local
    /// suite's key; see `gleitzeit_runtime::credentials`).
    pub api_key: Option<String>,
}

impl ServeConfig {
    /// Serving at `hub_url` with a default id and [`DEFAULT_GRACE`].
    pub fn new(hub_url: impl Into<String>) -> Self {
        ServeConfig {
            hub_url: hub_url.into(),
            component_id: None,
            grace: DEFAULT_GRACE,
            api_key: None,
        }
    }
}

/// Serves `provider` until `shutdown` fires or the hub asks it to stop; see the module doc.
/// [`Provider::shutdown`] is called on every way out.
pub async fn serve<P: Provider>(
    provider: Arc<P>,
    config: ServeConfig,
    shutdown: Shutdown,
) -> Result<(), ClientError> {
    let info = provider.info();
    let ty = info.component_type.clone();
    let id = config
        .component_id
        .unwrap_or_else(|| gleitzeit_runtime::default_component_id(&ty));
    let reg = registration(
        &ty,
        id,
        info.methods.clone(),
        info.capacity,
        info.metadata.clone(),
    );
    let (client, mut incoming) = match connect_component(
        ClientConfig::component(config.hub_url, reg)
            .with_optional_api_key(config.api_key.as_deref()),
        &shutdown,
    )
    .await
    {
        Ok(Some(connected)) => connected,
        Ok(None) => {
            provider.shutdown().await;
            return Ok(());
        }
        Err(e) => {
            provider.shutdown().await;
            return Err(e);
        }
    };
    info!(id = %client.id(), capacity = info.capacity, methods = ?info.methods, "{ty} serving");
    let (outcomes, batcher) = OutcomeSender::start(&client);
    let tasks = Tasks::new(
        provider.clone(),
        &info,
        client.id().to_string(),
        Some(client.clone()),
        outcomes,
    );
    let reports = spawn_held_reports(&client, {
        let tasks = tasks.clone();
        move || tasks.report()
    });
    let refresh = provider.refresh_interval().map(|every| {
        tokio::spawn(refresh_loop(
            provider.clone(),
            tasks.clone(),
            client.clone(),
            every,
        ))
    });
    while let Some(env) = next_envelope(&client, &mut incoming, &shutdown).await {
        handle(&client, &tasks, &ty, env);
    }
    drain(&client, &tasks, &ty, &mut incoming, config.grace).await;
    if let Some(r) = refresh {
        r.abort();
    }
    reports.abort();
    tasks.flush().await;
    settle(&client, &tasks).await;
    client.close().await;
    batcher.abort();
    provider.shutdown().await;
    Ok(())
}

/// Lets the hub route what was sent before deregistering. It handles every envelope in a
/// task of its own, so a `deregister` right behind the last outcomes may overtake them (and
/// the hub then refuses outcomes from a component no longer registered). A request's reply
/// comes from a task started after theirs; once it is back they are, in practice, routed.
/// Best effort: an outcome lost anyway only means the engine runs that task again when it
/// sees the provider leave.
async fn settle<P: Provider>(client: &HubClient, tasks: &Tasks<P>) {
    if !client.is_connected() {
        return;
    }
    let payload = json!({ "load": tasks.running() });
    let _ = client
        .request_with_timeout(
            Target::Hub,
            events::HEARTBEAT,
            payload,
            Duration::from_secs(2),
        )
        .await;
}

/// Runs [`Provider::refresh`] every `every` (at once first) and publishes what it returns.
async fn refresh_loop<P: Provider>(
    provider: Arc<P>,
    tasks: Tasks<P>,
    client: HubClient,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        if let Some(metadata) = provider.refresh().await {
            client.set_metadata(metadata);
        }
        tasks.publish_load();
    }
}

/// Handles one envelope addressed to the provider (`ping` and `shutdown` are handled by
/// [`next_envelope`] before).
fn handle<P: Provider>(client: &HubClient, tasks: &Tasks<P>, ty: &str, mut env: Envelope) {
    if env.event == events::METRICS {
        return crate::metrics::answer(client, &env, || tasks.metrics());
    }
    match ProviderRequest::decode_envelope(ty, &mut env) {
        Ok(ProviderRequest::Execute(batch)) => tasks.accept(&env.source, batch.tasks),
        Ok(ProviderRequest::Cancel(c)) => tasks.cancel(c.tasks),
        Err(e) if e.is(ErrorCode::UnknownEvent) => {
            let _ = client.respond(&env, Err(e));
        }
        // Engines do not wait for an answer: a malformed batch is logged and dropped (the
        // engine runs its tasks again when the provider does not report them held).
        Err(e) => warn!(error = %e, from = %env.source, "bad payload"),
    }
}

/// The drain: waits for running tasks up to `grace` while still answering envelopes (tasks
/// handed over now are held, not started, and given back at the end).
async fn drain<P: Provider>(
    client: &HubClient,
    tasks: &Tasks<P>,
    ty: &str,
    incoming: &mut Incoming,
    grace: Duration,
) {
    let (held, running) = (tasks.held(), tasks.running());
    if held > 0 {
        info!(held, running, grace_s = grace.as_secs_f64(), "draining");
    }
    let drain = tasks.drain(grace);
    tokio::pin!(drain);
    let mut open = true;
    let drained = loop {
        tokio::select! {
            drained = &mut drain => break drained,
            env = incoming.recv(), if open => match env {
                None => open = false,
                Some(env) => match env.event.as_str() {
                    events::PING => {
                        let _ = client.respond(&env, Ok(gleitzeit_hub_client::ping_reply(client)));
                    }
                    events::SHUTDOWN | events::HUB_SHUTTING_DOWN => {}
                    _ => handle(client, tasks, ty, env),
                },
            },
        }
    };
    if drained.not_started + drained.unfinished > 0 {
        warn!(
            unfinished = drained.unfinished,
            not_started = drained.not_started,
            "tasks given back to their engines (GZ1031: they run again)"
        );
    } else if held > 0 {
        info!("drained");
    }
}
