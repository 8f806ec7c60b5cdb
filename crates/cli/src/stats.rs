//! `gz stats [--range 1h] [--format table|json|csv]`: what the suite did over a recent
//! period, from the store (so it survives restarts): workflows by status, tasks by final
//! state, workflow durations (mean, p50, p95, max) and tasks finished per second. A USER
//! sees its own workflows, the other roles every workflow.

use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use serde_json::{json, Map, Value};

use crate::render;
use crate::workflow::{connect, qm_request, workflow_get_with};
use crate::CmdResult;

/// `gz stats` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// The period: `90s`, `30m`, `1h`, `2d`, or a number of minutes.
    #[arg(long, default_value = "1h")]
    pub range: String,
    /// table, json or csv.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
    pub format: String,
    /// At most this many workflows are read (newest first).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
    /// Same as `--format json`.
    #[arg(long)]
    pub json: bool,
}

/// `1h` → one hour; a bare number is minutes.
fn parse_range(text: &str) -> Result<Duration, GzError> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "m"),
    };
    let n: f64 = number.parse().map_err(|_| bad_range(text))?;
    let secs = match unit {
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(bad_range(text)),
    };
    if !(secs > 0.0 && secs <= 366.0 * 86_400.0) {
        return Err(bad_range(text));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad_range(text))
}

fn bad_range(text: &str) -> GzError {
    GzError::new(
        ErrorCode::Usage,
        format!("--range {text:?} is not a period"),
    )
    .with_hint("use 90s, 30m, 1h, 2d (up to a year), or minutes as a number")
}

/// The `q` quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

/// The figures of the workflows (each a `workflow_get` summary reply) created since `since`.
fn figures(replies: &[Value], range: Duration) -> Value {
    let mut by_status = Map::new();
    let mut tasks = [0u64; 5]; // total, completed, failed, skipped, cancelled
    let mut durations = Vec::new();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for r in replies {
        let w = &r["workflow"];
        let status = w["status"].as_str().unwrap_or("unknown").to_string();
        let n = by_status.get(&status).and_then(Value::as_u64).unwrap_or(0);
        by_status.insert(status, json!(n + 1));
        let c = &r["counts"];
        for (i, k) in ["total", "completed", "failed", "skipped", "cancelled"]
            .iter()
            .enumerate()
        {
            tasks[i] += c[*k].as_u64().unwrap_or(0);
        }
        if let (Some(s), Some(f)) = (w["created_at"].as_u64(), w["finished_at"].as_u64()) {
            durations.push(f.saturating_sub(s) as f64 / 1000.0);
            first = first.min(s);
            last = last.max(f);
        }
    }
    durations.sort_by(f64::total_cmp);
    let finished_tasks = tasks[1] + tasks[2] + tasks[3] + tasks[4];
    let busy = last.saturating_sub(first) as f64 / 1000.0;
    let mean =
        (!durations.is_empty()).then(|| durations.iter().sum::<f64>() / durations.len() as f64);
    json!({
        "range_seconds": range.as_secs_f64(),
        "workflows": replies.len(),
        "workflows_by_status": by_status,
        "tasks": tasks[0], "tasks_completed": tasks[1], "tasks_failed": tasks[2],
        "tasks_skipped": tasks[3], "tasks_cancelled": tasks[4],
        "task_success_rate": if finished_tasks > 0 { Some(tasks[1] as f64 / finished_tasks as f64) } else { None },
        "workflow_seconds_mean": mean,
        "workflow_seconds_p50": quantile(&durations, 0.5),
        "workflow_seconds_p95": quantile(&durations, 0.95),
        "workflow_seconds_max": durations.last(),
        "tasks_per_second": if busy > 0.0 { Some(finished_tasks as f64 / busy) } else { None },
        "tasks_per_second_over_range": finished_tasks as f64 / range.as_secs_f64(),
    })
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(0.0)),
        other => render::compact(other),
    }
}

/// `gz stats`.
pub async fn run(hub_url: &str, args: StatsArgs) -> CmdResult {
    let range = parse_range(&args.range)?;
    let since =
        render::now_ms().saturating_sub(u64::try_from(range.as_millis()).unwrap_or(u64::MAX));
    let (client, _incoming) = connect(hub_url).await?;
    let replies = async {
        let list = qm_request(
            &client,
            events::WORKFLOW_LIST,
            json!({ "limit": args.limit }),
        )
        .await?;
        let mut replies = Vec::new();
        for w in list.as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if w["created_at"].as_u64().unwrap_or(0) < since {
                continue;
            }
            if let Some(id) = w["id"].as_str() {
                replies.push(workflow_get_with(&client, id, true).await?);
            }
        }
        Ok::<_, GzError>(replies)
    }
    .await;
    client.close().await;
    let doc = figures(&replies?, range);
    let format = if args.json {
        "json"
    } else {
        args.format.as_str()
    };
    let rows: Vec<(String, String)> = doc
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(k, v)| match v {
            Value::Object(inner) => inner
                .iter()
                .map(|(s, n)| (format!("{k}.{s}"), shown(n)))
                .collect::<Vec<_>>(),
            other => vec![(k.clone(), shown(other))],
        })
        .collect();
    match format {
        "json" => println!("{doc}"),
        "csv" => {
            println!("metric,value");
            for (k, v) in rows {
                println!("{k},{v}");
            }
        }
        _ => {
            println!(
                "statistics of the last {}",
                render::seconds(range.as_secs_f64())
            );
            for (k, v) in rows {
                println!("  {k:<34} {v}");
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_people_write_them() {
        assert_eq!(parse_range("1h").expect("1h"), Duration::from_secs(3600));
        assert_eq!(parse_range("60").expect("60"), Duration::from_secs(3600));
        assert_eq!(parse_range("90s").expect("90s"), Duration::from_secs(90));
        assert_eq!(parse_range("2d").expect("2d"), Duration::from_secs(172_800));
        for bad in ["", "0", "-1h", "1y", "1e999", "999d"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn figures_count_statuses_tasks_and_durations() {
        let r = |status: &str, created: u64, finished: u64, done: u64, failed: u64| {
            json!({ "workflow": { "status": status, "created_at": created, "finished_at": finished },
                    "counts": { "total": done + failed, "completed": done, "failed": failed, "skipped": 0, "cancelled": 0 } })
        };
        let doc = figures(
            &[
                r("completed", 0, 2000, 10, 0),
                r("failed", 1000, 5000, 5, 5),
            ],
            Duration::from_secs(60),
        );
        assert_eq!(doc["workflows"], 2);
        assert_eq!(doc["workflows_by_status"]["failed"], 1);
        assert_eq!(doc["tasks_completed"], 15);
        assert_eq!(doc["task_success_rate"], 0.75);
        assert_eq!(doc["workflow_seconds_max"], 4.0);
        assert_eq!(doc["tasks_per_second"], 4.0);
    }
}
