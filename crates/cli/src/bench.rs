//! `gz bench`: starts a private local suite (binaries beside `gz`, a free port, a temporary
//! data dir) and measures, end to end through every service:
//! (a) throughput of N independent trivial Python tasks,
//! (b) per-hop latency of a chain of dependent trivial tasks,
//! (c) time and peak memory of big "wide and deep" workflows (layers of independent tasks,
//!     each depending on one task of the layer before), at several sizes to show growth.
//! Each measurement gets a fresh suite so peak memory belongs to that workflow alone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_runtime::LogFormat;
use gleitzeit_workflow::{OnFailure, Priority, RetryPolicy, TaskSpec, WorkflowSpec};
use serde_json::{json, Value};

use crate::suite::LocalSuite;
use crate::workflow::{connect, new_workflow_id, submit_spec, wait_ready, workflow_get_with};
use crate::CmdResult;

/// `gz bench` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Independent tasks for the throughput run.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// Length of the chain for the latency run.
    #[arg(long, default_value_t = 200)]
    pub chain: usize,
    /// Sizes of the wide-and-deep runs (comma-separated; 0 or empty skips them).
    #[arg(long, value_delimiter = ',', default_values_t = [25_000usize, 50_000, 100_000])]
    pub big: Vec<usize>,
    /// Tasks per layer in the wide-and-deep runs.
    #[arg(long, default_value_t = 1_000)]
    pub width: usize,
    /// Python workers (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Engine prefetch factor (default: the engine's).
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

fn task(id: String, deps: Vec<String>, code: String) -> TaskSpec {
    TaskSpec {
        name: id.clone(),
        id,
        method: "python/execute".into(),
        protocol: "python/v1".into(),
        parameters: json!({ "code": code }),
        dependencies: deps,
        priority: Priority::Normal,
        timeout: None,
        retry: RetryPolicy::default(),
    }
}

fn spec(name: &str, tasks: Vec<TaskSpec>) -> WorkflowSpec {
    WorkflowSpec {
        id: None,
        name: name.into(),
        description: None,
        metadata: json!({}),
        timeout: None,
        on_failure: OnFailure::Fail,
        tasks,
    }
}

fn independent(n: usize) -> WorkflowSpec {
    spec(
        "bench-independent",
        (0..n)
            .map(|i| task(format!("t{i}"), vec![], format!("result = {i}")))
            .collect(),
    )
}

fn chain(n: usize) -> WorkflowSpec {
    spec(
        "bench-chain",
        (0..n)
            .map(|i| {
                let deps = if i == 0 {
                    vec![]
                } else {
                    vec![format!("c{}", i - 1)]
                };
                task(format!("c{i}"), deps, format!("result = {i}"))
            })
            .collect(),
    )
}

fn wide_and_deep(n: usize, width: usize) -> WorkflowSpec {
    let width = width.max(1);
    spec(
        "bench-wide-deep",
        (0..n)
            .map(|i| {
                let deps = if i < width {
                    vec![]
                } else {
                    vec![format!("w{}", i - width)]
                };
                task(format!("w{i}"), deps, "result = 1".into())
            })
            .collect(),
    )
}

/// CPU seconds and peak resident memory (MiB) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let ticks: f64 =
                rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0);
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0;
    (cpu, peak)
}

/// Runs one workflow on a fresh suite; returns its figures.
async fn measure(label: &str, spec: WorkflowSpec, args: &BenchArgs) -> Result<Value, GzError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?
        .port();
    let hub_url = format!("http://127.0.0.1:{port}");
    let data_dir: PathBuf =
        std::env::temp_dir().join(format!("gz-bench-{}-{port}", std::process::id()));
    let mut env = Vec::new();
    if let Some(w) = args.workers {
        env.push(("GLEITZEIT_PYTHON_WORKERS", w.to_string()));
    }
    if let Some(p) = args.prefetch {
        env.push(("GLEITZEIT_PREFETCH", p.to_string()));
    }
    env.push(("GLEITZEIT_LOG_LEVEL", "warn".to_string()));
    let suite = LocalSuite::start_with(&hub_url, &data_dir, LogFormat::Text, false, &env).await?;
    let result = measure_on(&hub_url, label, spec, &suite).await;
    suite.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn measure_on(
    hub_url: &str,
    label: &str,
    spec: WorkflowSpec,
    suite: &LocalSuite,
) -> Result<Value, GzError> {
    wait_ready(hub_url, &spec, Duration::from_secs(20)).await;
    let (client, _incoming) = connect(hub_url).await?;
    let n = spec.tasks.len();
    let id = new_workflow_id();
    let dir = std::env::temp_dir();
    let started = Instant::now();
    submit_spec(&client, &id, &spec, &dir).await?;
    let submitted = started.elapsed();
    drop(spec);
    let reply = wait_done(&client, &id).await?;
    let wall = started.elapsed();
    let w = &reply["workflow"];
    let status = w["status"].as_str().unwrap_or("?").to_string();
    let run_ms = w["finished_at"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(w["created_at"].as_u64().unwrap_or(0));
    let mut processes = serde_json::Map::new();
    for (name, pid) in suite.pids() {
        let (cpu, peak) = usage(pid);
        processes.insert(
            name,
            json!({ "cpu_seconds": cpu, "peak_rss_mib": (peak * 10.0).round() / 10.0 }),
        );
    }
    let secs = run_ms as f64 / 1000.0;
    Ok(json!({
        "run": label, "tasks": n, "status": status,
        "submit_seconds": submitted.as_secs_f64(),
        "workflow_seconds": secs,
        "wall_seconds": wall.as_secs_f64(),
        "tasks_per_second": if secs > 0.0 { n as f64 / secs } else { 0.0 },
        "ms_per_task": if n > 0 { run_ms as f64 / n as f64 } else { 0.0 },
        "processes": processes,
    }))
}

async fn wait_done(client: &HubClient, id: &str) -> Result<Value, GzError> {
    loop {
        let reply = workflow_get_with(client, id, true).await?;
        if matches!(
            reply["workflow"]["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return Ok(reply);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn print_row(r: &Value) {
    let procs = r["processes"].as_object().cloned().unwrap_or_default();
    let peak: f64 = procs
        .values()
        .filter_map(|p| p["peak_rss_mib"].as_f64())
        .sum();
    let cpu: Vec<String> = procs
        .iter()
        .map(|(k, p)| {
            format!(
                "{k} {:.2}s/{:.0}MiB",
                p["cpu_seconds"].as_f64().unwrap_or(0.0),
                p["peak_rss_mib"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    println!(
        "{:<16} {:>7} tasks  {:<9}  {:>8.2} s  {:>9.0} tasks/s  {:>7.3} ms/task  submit {:.2} s  peak RSS (all services) {:.0} MiB",
        r["run"].as_str().unwrap_or(""),
        r["tasks"],
        r["status"].as_str().unwrap_or(""),
        r["workflow_seconds"].as_f64().unwrap_or(0.0),
        r["tasks_per_second"].as_f64().unwrap_or(0.0),
        r["ms_per_task"].as_f64().unwrap_or(0.0),
        r["submit_seconds"].as_f64().unwrap_or(0.0),
        peak
    );
    println!("{:<16} cpu/peak: {}", "", cpu.join(", "));
}

/// `gz bench`.
pub async fn run(args: BenchArgs) -> CmdResult {
    let mut results = Vec::new();
    let mut runs: Vec<(String, WorkflowSpec)> = Vec::new();
    if args.tasks > 0 {
        runs.push(("throughput".into(), independent(args.tasks)));
    }
    if args.chain > 0 {
        runs.push(("chain".into(), chain(args.chain)));
    }
    for &n in args.big.iter().filter(|n| **n > 0) {
        runs.push((
            format!("wide-deep-{}k", n / 1000),
            wide_and_deep(n, args.width),
        ));
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if !args.json {
        println!("gz bench: {cores} cores, every run on a fresh local suite (binaries beside gz)");
    }
    for (label, spec) in runs {
        let r = measure(&label, spec, &args).await?;
        if !args.json {
            print_row(&r);
        }
        results.push(r);
    }
    if args.json {
        println!("{}", json!({ "cores": cores, "results": results }));
    }
    let ok = results.iter().all(|r| r["status"] == "completed");
    Ok(if ok { 0 } else { 1 })
}
