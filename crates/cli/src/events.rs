//! `gz events [--types t1,t2] [--workflow ID] [--follow] [--json]`: the event stream.
//!
//! - `--workflow ID`: the workflow's kept events (`workflow_events`, oldest first); with
//!   `--follow`, then its live events until it ends (each shown once, by `seq`; live
//!   events arrive in `event_batch` envelopes and are printed one by one).
//! - `--follow` alone: every workflow and task event (room `events`, which needs a role
//!   that reads every workflow) and component joins and losses (room `components`), live
//!   until Ctrl-C.
//! - Neither: the kept events of the `--limit` most recent workflows, by time.

use std::collections::HashSet;

use gleitzeit_hub_client::{HubClient, Incoming};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::replies::EventBatch;
use serde_json::{json, Value};

use crate::follow::{event_line, is_terminal_event};
use crate::render;
use crate::workflow::{connect, qm_request};
use crate::CmdResult;

/// Events a client can see.
const VISIBLE: &[&str] = &[
    events::WORKFLOW_SUBMITTED,
    events::WORKFLOW_STARTED,
    events::WORKFLOW_PROGRESS,
    events::WORKFLOW_COMPLETED,
    events::WORKFLOW_FAILED,
    events::WORKFLOW_CANCELLED,
    events::TASK_STARTED,
    events::TASK_PROGRESS,
    events::TASK_COMPLETED,
    events::TASK_FAILED,
    events::TASK_RETRYING,
    events::TASK_SKIPPED,
    events::COMPONENT_JOINED,
    events::COMPONENT_LEFT,
    events::COMPONENT_UNHEALTHY,
    events::HUB_SHUTTING_DOWN,
];

/// `gz events` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct EventsArgs {
    /// Only these events (comma-separated or repeated), e.g. `task_completed,workflow_started`.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub types: Vec<String>,
    /// Only this workflow's events.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Keep printing events as they happen (until the workflow ends, or Ctrl-C).
    #[arg(long, short)]
    pub follow: bool,
    /// Without --workflow and --follow: how many recent workflows to show events of.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// One JSON object per line: `{"event", "ts", "payload"}`.
    #[arg(long)]
    pub json: bool,
}

/// Which events to show.
struct Filter(Option<HashSet<String>>);

impl Filter {
    fn new(types: &[String]) -> Result<Filter, GzError> {
        if types.is_empty() {
            return Ok(Filter(None));
        }
        for t in types {
            if !VISIBLE.contains(&t.as_str()) {
                return Err(
                    GzError::new(ErrorCode::Usage, format!("unknown event type {t:?}"))
                        .with_hint(format!("event types: {}", VISIBLE.join(", "))),
                );
            }
        }
        Ok(Filter(Some(types.iter().cloned().collect())))
    }

    fn wants(&self, event: &str) -> bool {
        self.0.as_ref().is_none_or(|set| set.contains(event))
    }
}

/// Prints one event.
fn print(event: &str, ts: u64, payload: &Value, json_out: bool) {
    if json_out {
        println!(
            "{}",
            json!({ "event": event, "ts": ts, "payload": payload })
        );
        return;
    }
    let detail = match event {
        events::COMPONENT_JOINED | events::COMPONENT_UNHEALTHY => format!(
            "{} ({})",
            payload["component_id"].as_str().unwrap_or("?"),
            payload["component_type"].as_str().unwrap_or("?")
        ),
        events::COMPONENT_LEFT => format!(
            "{} ({}): {}",
            payload["component_id"].as_str().unwrap_or("?"),
            payload["component_type"].as_str().unwrap_or("?"),
            payload["reason"].as_str().unwrap_or("?")
        ),
        events::WORKFLOW_PROGRESS => format!(
            "workflow {}: {}/{} finished",
            payload["workflow_id"].as_str().unwrap_or("?"),
            payload["finished_tasks"],
            payload["total_tasks"]
        ),
        events::TASK_PROGRESS => format!(
            "task {}: {:?}",
            payload["task_id"].as_str().unwrap_or("?"),
            payload["text"].as_str().unwrap_or_default()
        ),
        _ => event_line(event, payload).unwrap_or_else(|| payload.to_string()),
    };
    println!("{}  {event:<20} {detail}", render::time(ts));
}

/// The kept events of one workflow, oldest first.
async fn kept(client: &HubClient, id: &str, after: u64) -> Result<Vec<Value>, GzError> {
    let reply = qm_request(
        client,
        events::WORKFLOW_EVENTS,
        json!({ "workflow_id": id, "after_seq": after }),
    )
    .await?;
    Ok(reply["events"].as_array().cloned().unwrap_or_default())
}

/// `gz events`.
pub async fn run(hub_url: &str, args: EventsArgs) -> CmdResult {
    let filter = Filter::new(&args.types)?;
    let (client, mut incoming) = connect(hub_url).await?;
    let result = match (&args.workflow, args.follow) {
        (Some(id), follow) => {
            one_workflow(&client, &mut incoming, id, follow, &filter, args.json).await
        }
        (None, true) => everything(&client, &mut incoming, &filter, args.json).await,
        (None, false) => recent(&client, args.limit, &filter, args.json).await,
    };
    client.close().await;
    Ok(result?)
}

async fn one_workflow(
    client: &HubClient,
    incoming: &mut Incoming,
    id: &str,
    follow: bool,
    filter: &Filter,
    json_out: bool,
) -> Result<u8, GzError> {
    if follow {
        client.subscribe(&[rooms::workflow(id)]).await?;
    }
    let mut seen = HashSet::new();
    let mut ended = false;
    let past = kept(client, id, 0).await?;
    for e in &past {
        let event = e["event"].as_str().unwrap_or_default();
        seen.insert(e["payload"]["seq"].as_u64().unwrap_or(0));
        ended |= is_terminal_event(event);
        if filter.wants(event) {
            print(
                event,
                e["ts"].as_u64().unwrap_or(0),
                &e["payload"],
                json_out,
            );
        }
    }
    if past.is_empty() {
        // Unknown here, or its events expired: say what the store knows.
        let reply = crate::workflow::workflow_get_with(client, id, true).await?;
        ended = matches!(
            reply["workflow"]["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        );
    }
    if !follow || ended {
        return Ok(0);
    }
    let interrupt = gleitzeit_runtime::signal_shutdown();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            env = incoming.recv() => {
                let Some(env) = env else {
                    return Err(GzError::new(ErrorCode::Disconnected, "the connection to the hub closed"));
                };
                for env in EventBatch::unpack(env) {
                    if env.payload.get("workflow_id").and_then(Value::as_str) != Some(id) {
                        continue;
                    }
                    if let Some(seq) = env.payload.get("seq").and_then(Value::as_u64) {
                        if !seen.insert(seq) {
                            continue;
                        }
                    }
                    if filter.wants(&env.event) {
                        print(&env.event, env.ts, &env.payload, json_out);
                    }
                    if is_terminal_event(&env.event) {
                        return Ok(0);
                    }
                }
            }
            _ = &mut interrupt => return Ok(0),
        }
    }
}

async fn everything(
    client: &HubClient,
    incoming: &mut Incoming,
    filter: &Filter,
    json_out: bool,
) -> Result<u8, GzError> {
    client
        .subscribe(&[rooms::EVENTS.to_string(), rooms::COMPONENTS.to_string()])
        .await
        .map_err(|e| {
            if e.is(ErrorCode::PermissionDenied) {
                e.with_hint("the room `events` needs a role that reads every workflow (VIEWER, OPERATOR, ADMIN); a USER follows its own: gz events --workflow ID --follow")
            } else {
                e
            }
        })?;
    let interrupt = gleitzeit_runtime::signal_shutdown();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            env = incoming.recv() => {
                let Some(env) = env else {
                    return Err(GzError::new(ErrorCode::Disconnected, "the connection to the hub closed"));
                };
                for env in EventBatch::unpack(env) {
                    if VISIBLE.contains(&env.event.as_str()) && filter.wants(&env.event) {
                        print(&env.event, env.ts, &env.payload, json_out);
                    }
                }
            }
            _ = &mut interrupt => return Ok(0),
        }
    }
}

async fn recent(
    client: &HubClient,
    limit: u32,
    filter: &Filter,
    json_out: bool,
) -> Result<u8, GzError> {
    let list = qm_request(client, events::WORKFLOW_LIST, json!({ "limit": limit })).await?;
    let mut all = Vec::new();
    for w in list.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        if let Some(id) = w["id"].as_str() {
            all.extend(kept(client, id, 0).await?);
        }
    }
    all.sort_by_key(|e| e["ts"].as_u64().unwrap_or(0));
    for e in &all {
        let event = e["event"].as_str().unwrap_or_default();
        if filter.wants(event) {
            print(
                event,
                e["ts"].as_u64().unwrap_or(0),
                &e["payload"],
                json_out,
            );
        }
    }
    Ok(0)
}
