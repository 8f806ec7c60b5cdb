//! `gz monitor [--once] [--json] [--interval S]`: a live terminal view of the suite, redrawn
//! every interval until Ctrl-C: the hub, every component (type, health, load against
//! capacity, heartbeat age), LLM endpoints, the newest workflows with their progress, and
//! tasks finished per second over the last minute (a sparkline).
//!
//! Throughput comes from the `events` room when the key may join it (VIEWER, OPERATOR,
//! ADMIN); a USER's monitor counts from its own workflows' progress instead. Not on a
//! terminal (or with `--once`) it prints one snapshot and exits; `--json` prints snapshots
//! as JSON lines.

use std::collections::{HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use gleitzeit_hub_client::{HubClient, Incoming};
use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::payloads::{ComponentInfo, HubStatus};
use gleitzeit_protocol::replies::EventBatch;
use serde_json::{json, Value};

use crate::render;
use crate::status::get_json;
use crate::workflow::{connect, qm_request, workflow_get_with};
use crate::CmdResult;

/// `gz monitor` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    /// Print one snapshot and exit.
    #[arg(long)]
    pub once: bool,
    /// Snapshots as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// Seconds between redraws (0.2 to 60).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

/// Tasks finished per interval, the last minute of them.
struct Throughput {
    per_tick: VecDeque<u64>,
    from_events: bool,
    counted: u64,
    last_finished: HashMap<String, u64>,
}

impl Throughput {
    fn sparkline(&self) -> String {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let max = self.per_tick.iter().copied().max().unwrap_or(0).max(1);
        self.per_tick
            .iter()
            .map(|n| BARS[((*n * 7) / max) as usize])
            .collect()
    }
}

async fn snapshot(
    hub_url: &str,
    client: &HubClient,
    rate: &mut Throughput,
    interval: f64,
) -> Result<Value, GzError> {
    let hub: HubStatus = get_json(hub_url, "/health").await?;
    let components: Vec<ComponentInfo> = get_json(hub_url, "/components").await?;
    let providers: Vec<Value> = get_json(hub_url, "/providers").await.unwrap_or_default();
    let list = qm_request(client, events::WORKFLOW_LIST, json!({ "limit": 8 }))
        .await
        .unwrap_or(Value::Null);
    let mut workflows = Vec::new();
    let mut progressed = 0;
    for w in list.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let id = w["id"].as_str().unwrap_or_default();
        let counts = if matches!(w["status"].as_str(), Some("running" | "pending")) {
            workflow_get_with(client, id, true)
                .await
                .map(|r| r["counts"].clone())
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let finished = counts["finished"].as_u64().unwrap_or(0);
        let before = rate
            .last_finished
            .insert(id.to_string(), finished)
            .unwrap_or(finished);
        progressed += finished.saturating_sub(before);
        workflows.push(json!({
            "id": id, "name": w["name"], "status": w["status"], "total_tasks": w["total_tasks"],
            "finished_tasks": if counts.is_null() { Value::Null } else { json!(finished) },
            "created_at": w["created_at"],
        }));
    }
    let tick = if rate.from_events {
        std::mem::take(&mut rate.counted)
    } else {
        progressed
    };
    rate.per_tick.push_back(tick);
    let keep = (60.0 / interval).ceil() as usize;
    while rate.per_tick.len() > keep {
        rate.per_tick.pop_front();
    }
    let endpoints: Vec<Value> = providers
        .iter()
        .flat_map(|p| p["endpoints"].as_array().cloned().unwrap_or_default())
        .collect();
    Ok(json!({
        "ts": render::now_ms(),
        "hub": hub,
        "components": components,
        "endpoints": endpoints,
        "workflows": workflows,
        "tasks_per_second": tick as f64 / interval,
        "tasks_per_second_history": rate.per_tick.iter().map(|n| *n as f64 / interval).collect::<Vec<_>>(),
    }))
}

fn draw(s: &Value, rate: &Throughput, clear: bool) {
    let mut out = String::new();
    if clear {
        out.push_str("\x1b[H\x1b[2J");
    }
    let hub = &s["hub"];
    out.push_str(&format!(
        "gleitzeit monitor  {}  hub {} up {}  {} connections  {} messages routed\n\n",
        render::time(s["ts"].as_u64().unwrap_or(0)),
        hub["hub_id"].as_str().unwrap_or("?"),
        render::seconds(hub["uptime_seconds"].as_f64().unwrap_or(0.0)),
        hub["connections"],
        hub["messages_routed"]
    ));
    out.push_str(&format!(
        "{:<22} {:<34} {:<10} {:>9} {:>10}\n",
        "TYPE", "ID", "HEALTH", "LOAD", "HEARTBEAT"
    ));
    let now = render::now_ms();
    for c in s["components"].as_array().into_iter().flatten() {
        let age = now.saturating_sub(c["last_heartbeat"].as_u64().unwrap_or(now)) as f64 / 1000.0;
        out.push_str(&format!(
            "{:<22} {:<34} {:<10} {:>9} {:>9.1}s\n",
            c["component_type"].as_str().unwrap_or("?"),
            c["component_id"].as_str().unwrap_or("?"),
            c["health"].as_str().unwrap_or("?"),
            format!("{}/{}", c["load"], c["capacity"]),
            age
        ));
    }
    let endpoints = s["endpoints"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if !endpoints.is_empty() {
        out.push_str("\nLLM ENDPOINTS\n");
        for e in endpoints {
            out.push_str(&format!(
                "  {:<20} {:<10} {:>7} {:>9}\n",
                e["name"].as_str().unwrap_or("?"),
                e["health"].as_str().unwrap_or("?"),
                format!("{}/{}", e["in_flight"], e["max_concurrent"]),
                e["latency_ms"]
                    .as_f64()
                    .map(|l| format!("{l:.0} ms"))
                    .unwrap_or_else(|| "-".into())
            ));
        }
    }
    out.push_str("\nWORKFLOWS (newest)\n");
    for w in s["workflows"].as_array().into_iter().flatten() {
        let progress = match w["finished_tasks"].as_u64() {
            Some(f) => format!("{f}/{}", w["total_tasks"]),
            None => format!("{} tasks", w["total_tasks"]),
        };
        out.push_str(&format!(
            "  {:<36} {:<24} {:<10} {:>14}\n",
            w["id"].as_str().unwrap_or("?"),
            render::cell(w["name"].as_str().unwrap_or("")),
            w["status"].as_str().unwrap_or("?"),
            progress
        ));
    }
    out.push_str(&format!(
        "\nTASKS/S {:>8.1}  {}{}\n",
        s["tasks_per_second"].as_f64().unwrap_or(0.0),
        rate.sparkline(),
        if rate.from_events {
            ""
        } else {
            "  (from your workflows' progress)"
        }
    ));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// Counts finished tasks from the events that arrived.
fn count_events(incoming: &mut Incoming, rate: &mut Throughput) {
    while let Ok(env) = incoming.try_recv() {
        for env in EventBatch::unpack(env) {
            if matches!(
                env.event.as_str(),
                events::TASK_COMPLETED | events::TASK_FAILED | events::TASK_SKIPPED
            ) {
                rate.counted += 1;
            }
        }
    }
}

/// `gz monitor`.
pub async fn run(hub_url: &str, args: MonitorArgs) -> CmdResult {
    if !(0.2..=60.0).contains(&args.interval) {
        return Err(gleitzeit_protocol::GzError::new(
            gleitzeit_protocol::ErrorCode::Usage,
            format!(
                "--interval must be 0.2 to 60 seconds, not {}",
                args.interval
            ),
        )
        .into());
    }
    let interval = args.interval;
    let (client, mut incoming) = connect(hub_url).await?;
    let from_events = client
        .subscribe(&[rooms::EVENTS.to_string(), rooms::COMPONENTS.to_string()])
        .await
        .is_ok();
    let mut rate = Throughput {
        per_tick: VecDeque::new(),
        from_events,
        counted: 0,
        last_finished: HashMap::new(),
    };
    let live = !args.once && (args.json || std::io::stdout().is_terminal());
    let interrupt = gleitzeit_runtime::signal_shutdown();
    tokio::pin!(interrupt);
    let result = loop {
        count_events(&mut incoming, &mut rate);
        let s = match snapshot(hub_url, &client, &mut rate, interval).await {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        if args.json {
            println!("{s}");
        } else {
            draw(&s, &rate, live);
        }
        if !live {
            break Ok(0);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(interval)) => {}
            _ = &mut interrupt => break Ok(0),
        }
    };
    client.close().await;
    Ok(result?)
}
