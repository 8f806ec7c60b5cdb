//! `gz watch task ID` and `gz watch queue` (`gz watch [workflow] ID` follows a workflow, in
//! `crate::workflow`).
//!
//! - A task: its changes as they happen (events of its workflow's room, with a `task_get`
//!   poll as the fallback) until it is final; exit 0 when it completed, 1 otherwise.
//! - The queue: every second, the tasks queued, running and retrying over the unfinished
//!   workflows this key may read, with the busiest workflows; `--once` prints one snapshot.

use std::time::Duration;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::replies::EventBatch;
use serde_json::{json, Value};

use crate::render;
use crate::workflow::{connect, qm_request, workflow_get_with};
use crate::CmdResult;

fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "skipped" | "cancelled")
}

async fn task_get(client: &HubClient, workflow: Option<&str>, id: &str) -> Result<Value, GzError> {
    qm_request(
        client,
        events::TASK_GET,
        json!({ "workflow_id": workflow, "task_id": id }),
    )
    .await
}

fn print_task(t: &Value, json_out: bool) {
    if json_out {
        println!("{t}");
        return;
    }
    let mut line = format!(
        "task {} {} (attempt {})",
        t["task_id"].as_str().unwrap_or("?"),
        t["status"].as_str().unwrap_or("?"),
        t["attempts"].as_u64().unwrap_or(0)
    );
    if let Some(p) = t["provider_id"].as_str() {
        line.push_str(&format!(" on {p}"));
    }
    if !t["error"].is_null() {
        line.push_str(&format!(": {}", render::error_short(&t["error"])));
    } else if t["status"] == "completed" {
        line.push_str(&format!(
            " → {}",
            render::cell(&render::compact(&t["result"]))
        ));
    }
    eprintln!("{line}");
}

/// `gz watch task ID [--workflow W] [--json] [--timeout S]`.
pub async fn task(
    hub_url: &str,
    id: &str,
    workflow: Option<&str>,
    json_out: bool,
    timeout: Option<Duration>,
) -> CmdResult {
    let (client, mut incoming) = connect(hub_url).await?;
    let result = async {
        let mut t = task_get(&client, workflow, id).await?;
        let wf = t["workflow_id"].as_str().unwrap_or_default().to_string();
        client.subscribe(&[rooms::workflow(&wf)]).await?;
        // Read again: a change between the first read and the subscription is not missed.
        t = task_get(&client, Some(&wf), id).await?;
        print_task(&t, json_out);
        let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
        let interrupt = gleitzeit_runtime::signal_shutdown();
        tokio::pin!(interrupt);
        let mut last = (t["status"].clone(), t["attempts"].clone());
        while !is_final(t["status"].as_str().unwrap_or_default()) {
            let poll = tokio::time::Instant::now() + Duration::from_secs(1);
            let wake = deadline.map_or(poll, |d| d.min(poll));
            tokio::select! {
                env = incoming.recv() => {
                    let Some(env) = env else {
                        return Err(GzError::new(ErrorCode::Disconnected, "the connection to the hub closed"));
                    };
                    let mut changed = false;
                    for env in EventBatch::unpack(env) {
                        if env.payload["task_id"] != id || env.payload["workflow_id"] != wf.as_str() {
                            continue;
                        }
                        if env.event == events::TASK_PROGRESS {
                            if !json_out {
                                eprint!("{}", env.payload["text"].as_str().unwrap_or_default());
                            }
                        } else {
                            changed = true;
                        }
                    }
                    if !changed {
                        continue;
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        return Err(GzError::new(ErrorCode::TaskTimeout, format!("task {id} is still {} after the --timeout", t["status"].as_str().unwrap_or("?"))));
                    }
                }
                _ = &mut interrupt => {
                    return Err(GzError::new(ErrorCode::Cancelled, format!("interrupted while watching task {id}")));
                }
            }
            t = task_get(&client, Some(&wf), id).await?;
            let now = (t["status"].clone(), t["attempts"].clone());
            if now != last {
                print_task(&t, json_out);
                last = now;
            }
        }
        Ok(u8::from(t["status"] != "completed"))
    }
    .await;
    client.close().await;
    Ok(result?)
}

/// One snapshot of the queue over the unfinished workflows.
async fn snapshot(client: &HubClient) -> Result<Value, GzError> {
    let mut workflows = Vec::new();
    for status in ["running", "pending"] {
        let list = qm_request(
            client,
            events::WORKFLOW_LIST,
            json!({ "limit": 200, "status": status }),
        )
        .await?;
        workflows.extend(list.as_array().cloned().unwrap_or_default());
    }
    let (mut queued, mut running, mut retrying, mut pending) = (0, 0, 0, 0);
    let mut rows = Vec::new();
    for w in &workflows {
        let Some(id) = w["id"].as_str() else { continue };
        let Ok(reply) = workflow_get_with(client, id, true).await else {
            continue;
        };
        let c = &reply["counts"];
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        queued += n("queued");
        running += n("running");
        retrying += n("retrying");
        pending += n("pending");
        rows.push(json!({
            "workflow_id": id, "name": w["name"], "queued": n("queued"), "running": n("running"),
            "retrying": n("retrying"), "pending": n("pending"), "finished": n("finished"), "total": n("total"),
        }));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r["queued"].as_u64().unwrap_or(0)));
    Ok(json!({
        "ts": render::now_ms(),
        "workflows": workflows.len(), "queued": queued, "running": running,
        "retrying": retrying, "pending": pending, "by_workflow": rows,
    }))
}

/// `gz watch queue [--once] [--json]`.
pub async fn queue(hub_url: &str, once: bool, json_out: bool) -> CmdResult {
    let (client, _incoming) = connect(hub_url).await?;
    let result = async {
        let interrupt = gleitzeit_runtime::signal_shutdown();
        tokio::pin!(interrupt);
        loop {
            let s = snapshot(&client).await?;
            if json_out {
                println!("{s}");
            } else {
                println!(
                    "{}  queued {:>6}  running {:>5}  retrying {:>4}  waiting on dependencies {:>6}  ({} workflows)",
                    render::time(s["ts"].as_u64().unwrap_or(0)),
                    s["queued"], s["running"], s["retrying"], s["pending"], s["workflows"]
                );
                for r in s["by_workflow"].as_array().into_iter().flatten().take(5) {
                    if r["queued"] == 0 && r["running"] == 0 {
                        continue;
                    }
                    println!(
                        "    {:<36} queued {:>6}  running {:>5}  {}/{} done",
                        r["workflow_id"].as_str().unwrap_or("?"),
                        r["queued"], r["running"], r["finished"], r["total"]
                    );
                }
            }
            if once {
                return Ok(0);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = &mut interrupt => return Ok(0),
            }
        }
    }
    .await;
    client.close().await;
    result
}
