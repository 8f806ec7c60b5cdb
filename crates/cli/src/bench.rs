//! `gz bench`: starts a private local suite (binaries beside `gz`, a free port, a temporary
//! data dir) and measures, end to end through every service:
//! (a) throughput of N independent trivial Python tasks,
//! (b) per-hop latency of a chain of dependent trivial tasks,
//! (c) time and peak memory of big "wide and deep" workflows (layers of independent tasks,
//!     each depending on one task of the layer before), at several sizes to show growth.
//! Each measurement gets a fresh suite so peak memory belongs to that workflow alone.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::{HubClient, Incoming};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::rooms;
use gleitzeit_protocol::replies::EventsText;
use gleitzeit_runtime::LogFormat;
use gleitzeit_workflow::{OnFailure, Priority, RetryPolicy, TaskSpec, WorkflowSpec};
use serde_json::{json, Value};

use crate::follow::{is_terminal, is_terminal_event};
use crate::suite::{launch_error, LocalSuite};
use crate::workflow::{connect, new_workflow_id, submit_spec, wait_ready, workflow_get_with};
use crate::CmdResult;
use gleitzeit_launcher::{wait_ready_file, Launch};

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
    /// Make every wide-and-deep run of fan-outs (a layer is one template with --width
    /// members made at run time), as runs of more than 100,000 tasks always are.
    #[arg(long)]
    pub fan_out: bool,
    /// Python workers (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Engine prefetch factor (default: the engine's).
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Simulated LLM endpoints for the LLM runs (0 skips them).
    #[arg(long, default_value_t = 3)]
    pub llm_endpoints: usize,
    /// Slots per simulated endpoint.
    #[arg(long, default_value_t = 4)]
    pub llm_slots: u32,
    /// Latency of every simulated request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub llm_latency_ms: u64,
    /// Chat tasks in the LLM throughput run (0 skips the LLM runs).
    #[arg(long, default_value_t = 600)]
    pub llm_tasks: usize,
    /// Length of the LLM chain (added latency per request; 0 skips the LLM runs).
    #[arg(long, default_value_t = 40)]
    pub llm_chain: usize,
    /// Keep the queue-manager's state in this Redis (default: the embedded store).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Queue-managers sharing the Redis store (more than 1 needs --redis-url). Each
    /// workflow belongs to one queue-manager, so use --workflows to give them all work.
    #[arg(long, default_value_t = 1)]
    pub queue_managers: usize,
    /// Hubs: 2 puts the queue-manager and resolver on one hub and the engine and Python
    /// provider on a second hub of a mesh over --redis-url, so every task crosses hubs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub hubs: u8,
    /// Split the throughput run's tasks over this many workflows, submitted together.
    #[arg(long, default_value_t = 1)]
    pub workflows: usize,
    /// After Gleitzeit's runs, run the same throughput and chain workloads on Celery + Redis
    /// (when Celery is installed) and print both side by side with the ratios.
    #[arg(long)]
    pub compare_celery: bool,
    /// Give every task of the throughput and chain runs a source of its own (`result = 7`)
    /// instead of one source and a parameter (`result = context["i"]`, with `i` = 7): each
    /// task is then compiled by the Python worker. The workload of `gz bench` before
    /// 2026-12-07; the default matches the Celery baseline's one function with an argument.
    #[arg(long)]
    pub distinct_code: bool,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// A task of the throughput or chain run, numbered `i`: one source with `i` in its context,
/// or (`distinct`) a source of its own.
fn numbered_task(id: String, deps: Vec<String>, i: usize, distinct: bool) -> TaskSpec {
    if distinct {
        return task(id, deps, format!("result = {i}"));
    }
    let mut t = task(id, deps, "result = context[\"i\"]".to_string());
    t.parameters["context"] = json!({ "i": i });
    t
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
        files: Default::default(),
        tolerate_failures: false,
        batch: None,
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
        attachments: Default::default(),
    }
}

fn independent(n: usize, distinct: bool) -> WorkflowSpec {
    spec(
        "bench-independent",
        (0..n)
            .map(|i| numbered_task(format!("t{i}"), vec![], i, distinct))
            .collect(),
    )
}

fn chain(n: usize, distinct: bool) -> WorkflowSpec {
    spec(
        "bench-chain",
        (0..n)
            .map(|i| {
                let deps = if i == 0 {
                    vec![]
                } else {
                    vec![format!("c{}", i - 1)]
                };
                numbered_task(format!("c{i}"), deps, i, distinct)
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

/// Most tasks a wide-and-deep run lists one by one; larger runs are made of fan-outs
/// ([`wide_and_deep_fanout`]). A spec listing 100,000 tasks is ~22 MB of JSON; one of
/// 1,000,000 would be over the queue-manager's 32 MiB spec limit and the hub's 64 MiB
/// message limit, so a workflow that big is written as fan-outs (as a user would write it).
pub const MOST_LISTED_TASKS: usize = 100_000;

/// A wide-and-deep workflow of about `n` tasks made at run time: a `seed` task returns a
/// list of `width` items, and each of `n / width` layers is a fan-out template over the
/// list the layer before returned (its members' results), so every layer has `width`
/// members and starts when the one before has ended. The spec has `n / width + 1` tasks.
fn wide_and_deep_fanout(n: usize, width: usize) -> WorkflowSpec {
    let width = width.clamp(1, gleitzeit_workflow::fanout::MAX_ITEMS as usize);
    let layers = (n / width).max(1);
    let mut tasks = vec![task(
        "seed".into(),
        vec![],
        format!("result = list(range({width}))"),
    )];
    let mut before = "seed".to_string();
    for layer in 0..layers {
        let id = format!("layer{layer}");
        let mut t = task(id.clone(), vec![before.clone()], "result = 1".into());
        t.batch = Some(gleitzeit_workflow::fanout::FanOut {
            from: format!("${{{before}.result}}"),
            max_items: width as u64,
            fail_fast: false,
        });
        tasks.push(t);
        before = id;
    }
    spec("bench-wide-deep-fanout", tasks)
}

/// The tasks of a run: those its specs list, and (at most) `width` members per fan-out.
fn tasks_of(spec: &WorkflowSpec, width: usize) -> usize {
    spec.tasks
        .iter()
        .map(|t| if t.batch.is_some() { 1 + width } else { 1 })
        .sum()
}

/// Runs workflows on a fresh suite; returns their figures.
async fn measure(
    label: &str,
    specs: Vec<WorkflowSpec>,
    args: &BenchArgs,
) -> Result<Value, GzError> {
    // A run bigger than the queue-manager's default task limit raises it for its suite.
    let most = specs
        .iter()
        .map(|s| tasks_of(s, args.width))
        .max()
        .unwrap_or(0);
    let mut env = Vec::new();
    if most > gleitzeit_workflow::DEFAULT_MAX_TASKS {
        env.push(("GLEITZEIT_MAX_WORKFLOW_TASKS", most.to_string()));
    }
    measure_with(label, specs, args, &env).await
}

async fn measure_with(
    label: &str,
    specs: Vec<WorkflowSpec>,
    args: &BenchArgs,
    extra_env: &[(&str, String)],
) -> Result<Value, GzError> {
    let data_dir: PathBuf = std::env::temp_dir().join(format!(
        "gz-bench-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut env = Vec::new();
    if let Some(w) = args.workers {
        env.push(("GLEITZEIT_PYTHON_WORKERS", w.to_string()));
    }
    if let Some(p) = args.prefetch {
        env.push(("GLEITZEIT_PREFETCH", p.to_string()));
    }
    env.push(("GLEITZEIT_LOG_LEVEL", "warn".to_string()));
    if let Some(url) = &args.redis_url {
        env.push(("GLEITZEIT_REDIS_URL", url.clone()));
        if args.hubs > 1 {
            env.push(("GLEITZEIT_HUB_REDIS_URL", url.clone()));
        }
    }
    env.extend(extra_env.iter().cloned());
    let mut suite = LocalSuite::start_with(None, &data_dir, LogFormat::Text, false, &env).await?;
    let hub_url = suite.hub_url().to_string();
    for i in 2..=args.queue_managers {
        suite.add_instance("queue-manager", &format!("queue-manager-{i}"), None)?;
    }
    if args.hubs > 1 {
        // Execution moves to a second hub: every lease, outcome and event crosses the mesh.
        let hub2 = suite.add_hub("bench-hub-2").await?;
        for name in ["execution-engine", "python-provider", "ollama-provider"] {
            suite.kill(name);
            suite.add_instance(name, &format!("{name}-2"), Some(&hub2))?;
        }
        wait_for_components(
            &hub_url,
            &[
                "execution-engine-2",
                "python-provider-2",
                "ollama-provider-2",
            ],
        )
        .await;
    }
    let result = measure_on(&hub_url, label, specs, &suite).await;
    suite.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    result
}

async fn measure_on(
    hub_url: &str,
    label: &str,
    specs: Vec<WorkflowSpec>,
    suite: &LocalSuite,
) -> Result<Value, GzError> {
    if let Some(first) = specs.first() {
        wait_ready(hub_url, first, Duration::from_secs(20)).await;
    }
    let qms = suite
        .pids()
        .iter()
        .filter(|(n, _)| n.starts_with("queue-manager"))
        .count();
    if qms > 1 {
        wait_for_type(hub_url, "queue-manager", qms).await;
    }
    let (client, mut incoming) = connect(hub_url).await?;
    let workflows = specs.len();
    let dir = std::env::temp_dir();
    let started = Instant::now();
    let mut ids = Vec::new();
    for spec in specs {
        let id = new_workflow_id();
        submit_spec(&client, &id, &spec, &dir).await?;
        ids.push(id);
    }
    let submitted = started.elapsed();
    wait_all_done(&client, &mut incoming, &ids).await?;
    let wall = started.elapsed();
    let (mut first_created, mut last_finished) = (u64::MAX, 0u64);
    let mut status = "completed".to_string();
    // Every task, also the members fan-outs made at run time.
    let mut n = 0usize;
    for id in &ids {
        let reply = workflow_get_with(&client, id, true).await?;
        let w = &reply["workflow"];
        n += w["total_tasks"]
            .as_u64()
            .and_then(|t| usize::try_from(t).ok())
            .unwrap_or(0);
        let s = w["status"].as_str().unwrap_or("?");
        if s != "completed" {
            status = s.to_string();
        }
        first_created = first_created.min(w["created_at"].as_u64().unwrap_or(0));
        last_finished = last_finished.max(w["finished_at"].as_u64().unwrap_or(0));
    }
    let run_ms = last_finished.saturating_sub(first_created);
    let mut processes = serde_json::Map::new();
    for (name, pid) in suite.pids() {
        let (cpu, peak) = crate::procstat::usage(pid);
        processes.insert(
            name,
            json!({ "cpu_seconds": cpu, "peak_rss_mib": (peak * 10.0).round() / 10.0 }),
        );
    }
    // The python-provider's workers run the tasks' code: their cost is shown beside the
    // services', not in their sum (a fixed ~16 MiB interpreter each, whatever the run).
    let mut workers = json!(null);
    if let Some((_, pid)) = suite
        .pids()
        .iter()
        .find(|(n, _)| n.starts_with("python-provider"))
    {
        let (count, cpu, peak) = crate::procstat::children_usage(*pid);
        workers = json!({
            "count": count, "cpu_seconds": cpu, "peak_rss_mib": (peak * 10.0).round() / 10.0,
        });
    }
    let secs = run_ms as f64 / 1000.0;
    Ok(json!({
        "run": label, "tasks": n, "workflows": workflows, "queue_managers": qms,
        "hubs": suite.pids().iter().filter(|(n, _)| n.contains("hub")).count(),
        "status": status,
        "submit_seconds": submitted.as_secs_f64(),
        "workflow_seconds": secs,
        "wall_seconds": wall.as_secs_f64(),
        "tasks_per_second": if secs > 0.0 { n as f64 / secs } else { 0.0 },
        "ms_per_task": if n > 0 { run_ms as f64 / n as f64 } else { 0.0 },
        "processes": processes,
        "python_workers": workers,
    }))
}

/// Waits (up to 20 s) until the hub's component table satisfies `done`.
async fn wait_for_table(
    hub_url: &str,
    done: impl Fn(&[gleitzeit_protocol::payloads::ComponentInfo]) -> bool,
) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let list: Vec<gleitzeit_protocol::payloads::ComponentInfo> =
            crate::status::get_json(hub_url, "/components")
                .await
                .unwrap_or_default();
        if done(&list) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `count` components of a type are registered.
async fn wait_for_type(hub_url: &str, component_type: &str, count: usize) {
    wait_for_table(hub_url, |list| {
        list.iter()
            .filter(|c| c.registration.component_type == component_type)
            .count()
            >= count
    })
    .await;
}

/// Waits until components with these ids are registered, and no others of their types.
async fn wait_for_components(hub_url: &str, ids: &[&str]) {
    wait_for_table(hub_url, |list| {
        ids.iter().all(|id| {
            let Some(c) = list.iter().find(|c| c.registration.component_id == *id) else {
                return false;
            };
            let ty = &c.registration.component_type;
            list.iter()
                .filter(|o| &o.registration.component_type == ty)
                .count()
                == 1
        })
    })
    .await;
}

/// Waits until every workflow of `ids` ended, seen as `gz run` sees it: by its final
/// event (the rooms are joined after the submissions), with a summary poll at once (for
/// what ended before a room was joined) and then every second (events can be missed).
async fn wait_all_done(
    client: &HubClient,
    incoming: &mut Incoming,
    ids: &[String],
) -> Result<(), GzError> {
    // As `gz run` showing a summary: the rooms of the workflows' own events.
    let rooms: Vec<String> = ids.iter().map(|id| rooms::summary(id)).collect();
    client.subscribe(&rooms).await?;
    let mut open: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut next_poll = tokio::time::Instant::now();
    while !open.is_empty() {
        tokio::select! {
            env = incoming.recv() => {
                let Some(env) = env else {
                    return Err(GzError::new(ErrorCode::Disconnected, "the connection to the hub closed"));
                };
                // Only the events' names are read: their payloads stay text.
                if let Some(batch) = EventsText::of_batch(&env) {
                    if batch.events.iter().any(|e| is_terminal_event(&e.event)) {
                        open.remove(batch.workflow_id.as_str());
                    }
                } else if is_terminal_event(&env.event) {
                    if let Some(id) = env.payload.get("workflow_id").and_then(Value::as_str) {
                        open.remove(id);
                    }
                }
            }
            _ = tokio::time::sleep_until(next_poll) => {
                for id in open.clone() {
                    let reply = workflow_get_with(client, id, true).await?;
                    if is_terminal(&reply) {
                        open.remove(id);
                    }
                }
                next_poll = tokio::time::Instant::now() + Duration::from_secs(1);
            }
        }
    }
    Ok(())
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
        "{:<16} {:>7} tasks in {} workflow(s)  {:<9}  {:>8.2} s  {:>9.0} tasks/s  {:>7.3} ms/task  submit {:.2} s  peak RSS (all services) {:.0} MiB",
        r["run"].as_str().unwrap_or(""),
        r["tasks"],
        r["workflows"],
        r["status"].as_str().unwrap_or(""),
        r["workflow_seconds"].as_f64().unwrap_or(0.0),
        r["tasks_per_second"].as_f64().unwrap_or(0.0),
        r["ms_per_task"].as_f64().unwrap_or(0.0),
        r["submit_seconds"].as_f64().unwrap_or(0.0),
        peak
    );
    println!("{:<16} cpu/peak: {}", "", cpu.join(", "));
    let workers = &r["python_workers"];
    let worker_cpu = workers["cpu_seconds"].as_f64().unwrap_or(0.0);
    if let Some(count) = workers["count"].as_u64().filter(|&n| n > 0) {
        println!(
            "{:<16} python workers ({count}, outside the services' sum): {worker_cpu:.2}s/{:.0}MiB",
            "",
            workers["peak_rss_mib"].as_f64().unwrap_or(0.0)
        );
    }
    let tasks = r["tasks"].as_f64().unwrap_or(0.0);
    if tasks > 0.0 {
        let services: f64 = procs
            .values()
            .filter_map(|p| p["cpu_seconds"].as_f64())
            .sum();
        println!(
            "{:<16} cpu per task: {:.0} µs in the services + {:.0} µs in the Python workers",
            "",
            services / tasks * 1e6,
            worker_cpu / tasks * 1e6
        );
    }
}

/// `gz bench`.
pub async fn run(args: BenchArgs) -> CmdResult {
    let mut results = Vec::new();
    if (args.queue_managers > 1 || args.hubs > 1) && args.redis_url.is_none() {
        return Err(GzError::new(
            ErrorCode::Usage,
            "--queue-managers and --hubs above 1 need --redis-url: queue-managers share work, and hubs relay, through Redis",
        )
        .into());
    }
    let mut runs: Vec<(String, Vec<WorkflowSpec>)> = Vec::new();
    if args.tasks > 0 {
        let k = args.workflows.clamp(1, args.tasks);
        let specs = (0..k)
            .map(|w| {
                independent(
                    args.tasks / k + usize::from(w < args.tasks % k),
                    args.distinct_code,
                )
            })
            .collect();
        runs.push(("throughput".into(), specs));
    }
    if args.chain > 0 {
        runs.push(("chain".into(), vec![chain(args.chain, args.distinct_code)]));
    }
    for &n in args.big.iter().filter(|n| **n > 0) {
        let size = if n % 1000 == 0 {
            format!("{}k", n / 1000)
        } else {
            n.to_string()
        };
        if n > MOST_LISTED_TASKS || args.fan_out {
            runs.push((
                format!("wide-deep-{size}-fanout"),
                vec![wide_and_deep_fanout(n, args.width)],
            ));
        } else {
            runs.push((
                format!("wide-deep-{size}"),
                vec![wide_and_deep(n, args.width)],
            ));
        }
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if !args.json {
        let store = match &args.redis_url {
            Some(u) => format!(
                "Redis store at {u}, {} queue-manager(s), {} hub(s)",
                args.queue_managers, args.hubs
            ),
            None => "embedded store".to_string(),
        };
        println!("gz bench: {cores} cores, {store}, every run on a fresh local suite (binaries beside gz)");
    }
    for (label, specs) in runs {
        let r = measure(&label, specs, &args).await?;
        if !args.json {
            print_row(&r);
        }
        results.push(r);
    }
    // The LLM figures compare its throughput and chain runs: both or neither.
    if args.llm_endpoints > 0 && args.llm_tasks > 0 && args.llm_chain > 0 {
        let llm = bench_llm(&args).await?;
        if !args.json {
            print_llm(&llm);
        }
        results.push(llm);
    }
    let mut doc = json!({ "cores": cores, "results": results });
    if args.compare_celery {
        compare_celery(&args, cores, &mut doc).await;
    }
    if args.json {
        println!("{doc}");
    }
    let ok = results
        .iter()
        .all(|r| r["status"] == "completed" || r["run"] == "llm");
    Ok(if ok { 0 } else { 1 })
}

/// `--compare-celery`: the Celery baseline with the same sizes and as many workers; adds
/// `"celery"` (null when it is not installed or failed) and `"ratios"` to `doc`. Never fails
/// the bench: a missing Celery is one line, a failed run a warning with the script's output.
async fn compare_celery(args: &BenchArgs, cores: usize, doc: &mut Value) {
    let workers = args.workers.unwrap_or(cores).max(1);
    if !args.json {
        println!(
            "celery           the same {} tasks and {}-chain on Celery + Redis, {workers} prefork worker(s)…",
            args.tasks, args.chain
        );
    }
    let (celery, ratios, error) =
        match crate::bench_celery::run_baseline(args.tasks, args.chain, workers).await {
            Ok(celery) => {
                let results = doc["results"].as_array().cloned().unwrap_or_default();
                let ratios = crate::bench_celery::ratios(&results, &celery);
                if !args.json {
                    crate::bench_celery::print_side_by_side(&results, &celery, &ratios);
                }
                (celery, ratios, Value::Null)
            }
            Err(crate::bench_celery::BaselineError::NotInstalled(why)) => {
                let line = format!("celery           not compared: {why}");
                if args.json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                (Value::Null, Value::Null, json!(why))
            }
            Err(e) => {
                eprintln!("warning: the Celery baseline failed (Gleitzeit's figures stand): {e}");
                (Value::Null, Value::Null, json!(e.to_string()))
            }
        };
    doc["celery"] = celery;
    doc["ratios"] = ratios;
    doc["celery_error"] = error;
}

fn chat_task(id: String, deps: Vec<String>, content: String) -> TaskSpec {
    TaskSpec {
        name: id.clone(),
        id,
        method: "llm/chat".into(),
        protocol: "llm/v1".into(),
        parameters: json!({ "model": "llama3.2:latest", "messages": [{ "role": "user", "content": content }] }),
        dependencies: deps,
        priority: Priority::Normal,
        timeout: None,
        retry: RetryPolicy::default(),
        files: Default::default(),
        tolerate_failures: false,
        batch: None,
    }
}

/// Simulated endpoints with known slots and latency: throughput against the ideal
/// (sum of slots / latency) and the latency added per request over a direct call.
async fn bench_llm(args: &BenchArgs) -> Result<Value, GzError> {
    let dir = std::env::temp_dir().join(format!(
        "gz-bench-llm-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut sims = Vec::new();
    let mut endpoints = String::new();
    let mut urls = Vec::new();
    for i in 0..args.llm_endpoints {
        let name = format!("sim{i}");
        let ready = dir.join(format!("{name}.ready"));
        let mut sim = Launch::binary(&name, "gleitzeit-llm-sim", dir.join(format!("{name}.log")))
            .map_err(launch_error)?
            .args(["--port", "0", "--name", &name])
            .arg("--ready-file")
            .arg(&ready)
            .args([
                "--latency-ms",
                &args.llm_latency_ms.to_string(),
                "--tokens-per-sec",
                "0",
            ])
            .args([
                "--max-concurrent",
                &args.llm_slots.to_string(),
                "--overflow",
                "reject",
            ])
            .spawn()
            .map_err(launch_error)?;
        let addr = wait_ready_file(&mut sim, &ready, Duration::from_secs(10))
            .await
            .map_err(launch_error)?;
        sims.push(sim);
        let url = format!("http://{addr}");
        endpoints.push_str(&format!(
            "  - {{ name: {name}, url: \"{url}\", max_concurrent: {} }}\n",
            args.llm_slots
        ));
        urls.push(url);
    }
    let first_url = urls
        .first()
        .cloned()
        .ok_or_else(|| GzError::new(ErrorCode::Internal, "no simulated endpoint"))?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?;
    // Direct calls, one at a time: the baseline for the added latency.
    let direct_n = args.llm_chain.max(1);
    let t = Instant::now();
    for i in 0..direct_n {
        let body = json!({ "model": "llama3.2:latest", "stream": false, "messages": [{ "role": "user", "content": format!("q{i}") }] });
        http.post(format!("{first_url}/api/chat"))
            .json(&body)
            .send()
            .await
            .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?;
    }
    let direct_ms = t.elapsed().as_secs_f64() * 1000.0 / direct_n as f64;
    // Direct calls with every slot busy: what the endpoints deliver on this machine.
    let per_slot = (args.llm_tasks / (urls.len() * args.llm_slots as usize).max(1)).max(1);
    let t = Instant::now();
    let mut workers = Vec::new();
    for url in &urls {
        for _ in 0..args.llm_slots {
            let (http, url) = (http.clone(), url.clone());
            workers.push(tokio::spawn(async move {
                for i in 0..per_slot {
                    let body = json!({ "model": "llama3.2:latest", "stream": false, "messages": [{ "role": "user", "content": format!("q{i}") }] });
                    let _ = http.post(format!("{url}/api/chat")).json(&body).send().await;
                }
            }));
        }
    }
    for w in workers {
        let _ = w.await;
    }
    let direct_parallel =
        (per_slot * urls.len() * args.llm_slots as usize) as f64 / t.elapsed().as_secs_f64();

    let config = dir.join("endpoints.yaml");
    std::fs::write(&config, format!("endpoints:\n{endpoints}"))
        .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?;
    let env = [("GLEITZEIT_OLLAMA_CONFIG", config.display().to_string())];
    let parallel = spec(
        "bench-llm",
        (0..args.llm_tasks)
            .map(|i| chat_task(format!("l{i}"), vec![], format!("question {i}")))
            .collect(),
    );
    let through = measure_with("llm-throughput", vec![parallel], args, &env).await?;
    let chain_spec = spec(
        "bench-llm-chain",
        (0..args.llm_chain)
            .map(|i| {
                let deps = if i == 0 {
                    vec![]
                } else {
                    vec![format!("k{}", i - 1)]
                };
                chat_task(format!("k{i}"), deps, format!("step {i}"))
            })
            .collect(),
    );
    let chained = measure_with("llm-chain", vec![chain_spec], args, &env).await?;
    drop(sims);
    let _ = std::fs::remove_dir_all(&dir);

    let latency_s = args.llm_latency_ms as f64 / 1000.0;
    let ideal = args.llm_endpoints as f64 * f64::from(args.llm_slots) / latency_s;
    let achieved = through["tasks_per_second"].as_f64().unwrap_or(0.0);
    let per_hop_ms = chained["ms_per_task"].as_f64().unwrap_or(0.0);
    Ok(json!({
        "run": "llm",
        "endpoints": args.llm_endpoints, "slots_per_endpoint": args.llm_slots, "latency_ms": args.llm_latency_ms,
        "tasks": args.llm_tasks,
        "status": if through["status"] == "completed" && chained["status"] == "completed" { "completed" } else { "failed" },
        "ideal_tasks_per_second": ideal,
        "achieved_tasks_per_second": achieved,
        "fraction_of_ideal": if ideal > 0.0 { achieved / ideal } else { 0.0 },
        "direct_parallel_tasks_per_second": direct_parallel,
        "fraction_of_direct": if direct_parallel > 0.0 { achieved / direct_parallel } else { 0.0 },
        "direct_ms_per_request": direct_ms,
        "orchestrated_ms_per_request": per_hop_ms,
        "added_ms_per_request": per_hop_ms - direct_ms,
        "throughput_run": through,
        "chain_run": chained,
    }))
}

fn print_llm(r: &Value) {
    println!(
        "llm              {} endpoints x {} slots at {} ms: {:.0} of ideal {:.0} tasks/s ({:.1}%), {} tasks",
        r["endpoints"],
        r["slots_per_endpoint"],
        r["latency_ms"],
        r["achieved_tasks_per_second"].as_f64().unwrap_or(0.0),
        r["ideal_tasks_per_second"].as_f64().unwrap_or(0.0),
        r["fraction_of_ideal"].as_f64().unwrap_or(0.0) * 100.0,
        r["tasks"]
    );
    println!(
        "                 direct calls with every slot busy: {:.0} tasks/s, so gleitzeit reaches {:.1}% of what the endpoints deliver",
        r["direct_parallel_tasks_per_second"].as_f64().unwrap_or(0.0),
        r["fraction_of_direct"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!(
        "                 chain: {:.2} ms per request through gleitzeit vs {:.2} ms direct = {:.2} ms added",
        r["orchestrated_ms_per_request"].as_f64().unwrap_or(0.0),
        r["direct_ms_per_request"].as_f64().unwrap_or(0.0),
        r["added_ms_per_request"].as_f64().unwrap_or(0.0)
    );
}
