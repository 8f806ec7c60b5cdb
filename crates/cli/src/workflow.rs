//! Workflow commands that read a file or follow a run: `gz validate`, `gz run`, `gz submit`,
//! `gz watch`.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gleitzeit_hub_client::{HubClient, Incoming};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types, rooms};
use gleitzeit_protocol::payloads::{ComponentInfo, SubmitWorkflow, WorkflowRef};
use gleitzeit_protocol::Target;
use gleitzeit_runtime::LogFormat;
use gleitzeit_workflow::{parse_workflow, Diagnostic, MethodCatalog, Parsed, WorkflowSpec};
use serde_json::{json, Value};

use crate::render;
use crate::status::get_json;
use crate::suite::{default_data_dir, LocalSuite};
use crate::CmdResult;

/// How long queue-manager requests may take (large workflows take time to persist).
pub const QM_TIMEOUT: Duration = Duration::from_secs(30);

/// `gz validate` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The workflow file (YAML).
    pub file: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `gz run` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The workflow file (YAML).
    #[arg(required_unless_present = "function")]
    pub file: Option<PathBuf>,
    /// Run one named function instead of a file (`python/function`; `gz functions list`
    /// shows them), with `--args`.
    #[arg(long, value_name = "NAME", conflicts_with = "file")]
    pub function: Option<String>,
    /// Arguments of `--function`: `KEY=VALUE` each; a VALUE that reads as JSON (`10`,
    /// `[1,2]`, `true`, `"text"`) keeps its type, anything else is a string.
    #[arg(long = "args", value_name = "KEY=VALUE", num_args = 1.., requires = "function")]
    pub function_args: Vec<String>,
    /// Only a provider of this service may run `--function` (`builtin`: the python-provider).
    #[arg(long, value_name = "SERVICE", requires = "function")]
    pub service: Option<String>,
    /// Print one JSON document with the final state.
    #[arg(long)]
    pub json: bool,
    /// Stop waiting after this many seconds (the workflow is not cancelled).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// Where a suite started for this run keeps state and logs (default: the user's data dir).
    #[arg(long, env = "GLEITZEIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `gz submit` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmitArgs {
    /// The workflow file (YAML).
    pub file: PathBuf,
    /// Print `{"workflow_id": ...}`.
    #[arg(long)]
    pub json: bool,
}

/// `gz watch` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Workflow id.
    pub id: String,
    /// Print one JSON object per event, then the final state.
    #[arg(long)]
    pub json: bool,
    /// Stop waiting after this many seconds.
    #[arg(long)]
    pub timeout: Option<f64>,
}

/// The queue-manager target.
pub fn queue_manager() -> Target {
    Target::Type(component_types::QUEUE_MANAGER.into())
}

/// A request to the queue-manager with the long timeout.
pub async fn qm_request(client: &HubClient, event: &str, payload: Value) -> Result<Value, GzError> {
    client
        .request_with_timeout(queue_manager(), event, payload, QM_TIMEOUT)
        .await
}

/// Connects a plain client.
pub async fn connect(hub_url: &str) -> Result<(HubClient, Incoming), GzError> {
    let url = match HUB_LIST.get() {
        Some(list) if list.first().is_some_and(|f| f == hub_url) => list.join(","),
        _ => hub_url.to_string(),
    };
    HubClient::connect(crate::credentials::client_config(&url))
        .await
        .map_err(GzError::from)
}

/// Hubs of a mesh given to `--hub-url` as a list, the answering one first.
static HUB_LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Remembers the hub list: Socket.IO sessions to its first hub fail over to the others.
pub fn set_hub_list(urls: Vec<String>) {
    let _ = HUB_LIST.set(urls);
}

/// `workflow_get` for one workflow.
pub async fn workflow_get(client: &HubClient, id: &str) -> Result<Value, GzError> {
    workflow_get_with(client, id, false).await
}

/// `workflow_get` for one workflow; `summary` leaves out the task list.
pub async fn workflow_get_with(
    client: &HubClient,
    id: &str,
    summary: bool,
) -> Result<Value, GzError> {
    let payload = serde_json::to_value(WorkflowRef {
        workflow_id: id.to_string(),
        summary,
    })
    .unwrap_or(Value::Null);
    qm_request(client, events::WORKFLOW_GET, payload).await
}

// ------------------------------------------------------------------ files

/// Reads a workflow file; returns its text and its folder (absolute).
fn read_file(path: &Path) -> Result<(String, PathBuf), GzError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorCode::FileNotFound
        } else {
            ErrorCode::Usage
        };
        GzError::new(code, format!("cannot read {}: {e}", path.display()))
    })?;
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((text, dir))
}

/// Parses with the built-in catalog.
fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
    parse_workflow(text, &MethodCatalog::builtin())
}

fn count_errors(diags: &[Diagnostic]) -> usize {
    diags.iter().filter(|d| d.is_error()).count()
}

/// The error for an invalid file (exit 2), with every diagnostic in the details.
fn invalid(path: &Path, diags: &[Diagnostic]) -> GzError {
    let errors = count_errors(diags);
    GzError::new(
        ErrorCode::ValidationFailed,
        format!(
            "{} is not a valid workflow ({errors} error{})",
            path.display(),
            if errors == 1 { "" } else { "s" }
        ),
    )
    .with_details(json!({ "diagnostics": diags }))
}

/// Reads and parses a file; on diagnostics prints them (stderr, unless `json`) and fails.
fn load(path: &Path, json_out: bool) -> Result<(WorkflowSpec, PathBuf), GzError> {
    let (text, dir) = read_file(path)?;
    match parse(&text) {
        Ok(parsed) => {
            if !json_out {
                for w in &parsed.warnings {
                    eprintln!("{w}");
                }
            }
            Ok((parsed.spec, dir))
        }
        Err(diags) => {
            if !json_out {
                for d in &diags {
                    eprintln!("{d}");
                }
            }
            Err(invalid(path, &diags))
        }
    }
}

// ------------------------------------------------------------------ validate

/// `gz validate FILE [--json]`.
pub fn validate(args: ValidateArgs) -> CmdResult {
    let (text, _) = read_file(&args.file)?;
    let (valid, diags, tasks) = match parse(&text) {
        Ok(p) => (true, p.warnings, p.spec.tasks.len()),
        Err(d) => (false, d, 0),
    };
    if args.json {
        let mut doc = json!({ "valid": valid, "diagnostics": diags });
        if valid {
            doc["total_tasks"] = json!(tasks);
        }
        println!("{doc}");
    } else {
        for d in &diags {
            println!("{d}");
        }
        if valid {
            println!("valid: {tasks} task{}", if tasks == 1 { "" } else { "s" });
        } else {
            let errors = count_errors(&diags);
            let warnings = diags.len() - errors;
            println!(
                "invalid: {errors} error{}, {warnings} warning{}",
                if errors == 1 { "" } else { "s" },
                if warnings == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if valid { 0 } else { 2 })
}

// ------------------------------------------------------------------ submit

pub(crate) async fn submit_spec(
    client: &HubClient,
    id: &str,
    spec: &WorkflowSpec,
    base_dir: &Path,
) -> Result<Value, GzError> {
    let spec = serde_json::to_value(spec)
        .map_err(|e| GzError::new(ErrorCode::Internal, format!("cannot encode the spec: {e}")))?;
    let payload = serde_json::to_value(SubmitWorkflow {
        workflow_id: Some(id.to_string()),
        spec,
        base_dir: Some(base_dir.to_string_lossy().into_owned()),
    })
    .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?;
    qm_request(client, events::WORKFLOW_SUBMIT, payload).await
}

pub(crate) fn new_workflow_id() -> String {
    format!("wf-{}", uuid::Uuid::new_v4().simple())
}

/// `gz submit FILE [--json]`.
pub async fn submit(hub_url: &str, args: SubmitArgs) -> CmdResult {
    let (spec, dir) = load(&args.file, args.json)?;
    let (client, _incoming) = connect(hub_url).await?;
    let id = new_workflow_id();
    let result = submit_spec(&client, &id, &spec, &dir).await;
    client.close().await;
    let reply = result?;
    let id = reply
        .get("workflow_id")
        .and_then(Value::as_str)
        .unwrap_or(&id)
        .to_string();
    if args.json {
        println!(
            "{}",
            json!({ "workflow_id": id, "total_tasks": reply.get("total_tasks").cloned().unwrap_or(Value::Null) })
        );
    } else {
        println!("{id}");
    }
    Ok(0)
}

// ------------------------------------------------------------------ run

/// `gz run FILE [--json] [--timeout SECS] [--data-dir DIR]`.
pub async fn run(hub_url: &str, log_format: LogFormat, args: RunArgs) -> CmdResult {
    let (spec, dir) = match (&args.file, &args.function) {
        (Some(file), _) => load(file, args.json)?,
        (None, Some(name)) => one_shot_function(
            name,
            &args.function_args,
            args.service.as_deref(),
            args.json,
        )?,
        (None, None) => {
            return Err(
                GzError::new(ErrorCode::Usage, "give a workflow file or --function NAME").into(),
            )
        }
    };
    let timeout = timeout_of(args.timeout)?;
    let mut suite = None;
    if !crate::status::is_alive(hub_url).await {
        let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
        let started = LocalSuite::start(hub_url, &data_dir, log_format, false)
            .await
            .map_err(|e| {
                let mut err = GzError::new(
                    ErrorCode::HubUnreachable,
                    format!(
                        "no hub answers at {hub_url} and a local suite could not be started: {}: {}",
                        e.code, e.message
                    ),
                );
                if let Some(h) = e.hint {
                    err = err.with_hint(h);
                }
                err
            })?;
        eprintln!(
            "started a local gleitzeit suite at {hub_url} for this run (logs in {})",
            data_dir.join("logs").display()
        );
        suite = Some(started);
        wait_ready(hub_url, &spec, Duration::from_secs(15)).await;
    }
    let result = run_on_hub(hub_url, &spec, &dir, args.json, timeout).await;
    if let Some(s) = suite {
        s.shutdown().await;
    }
    result
}

/// A workflow of one `python/function` task calling `name` with `KEY=VALUE` arguments,
/// validated like a file (a built-in function's arguments are checked against its schema).
fn one_shot_function(
    name: &str,
    pairs: &[String],
    service: Option<&str>,
    json_out: bool,
) -> Result<(WorkflowSpec, PathBuf), GzError> {
    let mut kwargs = serde_json::Map::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(GzError::new(
                ErrorCode::Usage,
                format!("--args takes KEY=VALUE, not {pair:?}"),
            )
            .with_hint("for example: gz run --function fibonacci --args n=10"));
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        kwargs.insert(key.trim().to_string(), value);
    }
    let mut params = json!({ "function_name": name, "kwargs": kwargs });
    if let Some(service) = service {
        params["service_name"] = json!(service);
    }
    let doc = json!({
        "name": format!("function {name}"),
        "tasks": [{ "id": name, "method": gleitzeit_protocol::routing::PYTHON_FUNCTION, "parameters": params }],
    });
    let dir = std::env::current_dir().unwrap_or_default();
    // JSON is YAML: the one-task workflow goes through the same parser and checks as a file.
    match parse(&doc.to_string()) {
        Ok(parsed) => Ok((parsed.spec, dir)),
        Err(diags) => {
            if !json_out {
                for d in &diags {
                    eprintln!("{d}");
                }
            }
            Err(invalid(Path::new("--function"), &diags))
        }
    }
}

fn timeout_of(secs: Option<f64>) -> Result<Option<Duration>, GzError> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(GzError::new(
            ErrorCode::Usage,
            format!("--timeout must be a positive number of seconds, not {s}"),
        )),
    }
}

/// Waits (at most `limit`) until the services the workflow needs have registered.
pub(crate) async fn wait_ready(hub_url: &str, spec: &WorkflowSpec, limit: Duration) {
    let methods: BTreeSet<&str> = spec.tasks.iter().map(|t| t.method.as_str()).collect();
    let needed_types = [
        component_types::QUEUE_MANAGER,
        component_types::DEPENDENCY_RESOLVER,
        component_types::EXECUTION_ENGINE,
    ];
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(list) = get_json::<Vec<ComponentInfo>>(hub_url, "/components").await {
            let has_type = |t: &str| list.iter().any(|c| c.registration.component_type == t);
            let has_method = |m: &str| {
                list.iter()
                    .any(|c| c.registration.capabilities.iter().any(|x| x == m))
            };
            if needed_types.iter().all(|t| has_type(t)) && methods.iter().all(|m| has_method(m)) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_on_hub(
    hub_url: &str,
    spec: &WorkflowSpec,
    dir: &Path,
    json_out: bool,
    timeout: Option<Duration>,
) -> CmdResult {
    let started = Instant::now();
    let (client, mut incoming) = connect(hub_url).await?;
    let result = async {
        let id = new_workflow_id();
        // Subscribing needs the workflow to exist (a USER may watch only their own), so the
        // room is joined after the submit and `follow` first catches up on what it missed.
        let reply = submit_spec(&client, &id, spec, dir).await?;
        client.subscribe(&[rooms::workflow(&id)]).await?;
        let total = reply
            .get("total_tasks")
            .and_then(Value::as_u64)
            .unwrap_or(spec.tasks.len() as u64);
        eprintln!("submitted workflow {id} ({}, {total} tasks)", spec.name);
        follow(
            &client,
            &mut incoming,
            &id,
            Follow::progress(),
            total,
            timeout,
        )
        .await?;
        let fin = workflow_get(&client, &id).await?;
        Ok::<_, GzError>(finish(&fin, started.elapsed(), json_out))
    }
    .await;
    client.close().await;
    Ok(result?)
}

// ------------------------------------------------------------------ watch

/// `gz watch ID [--json]`.
pub async fn watch(hub_url: &str, args: WatchArgs) -> CmdResult {
    let timeout = timeout_of(args.timeout)?;
    let started = Instant::now();
    let (client, mut incoming) = connect(hub_url).await?;
    let result = async {
        client.subscribe(&[rooms::workflow(&args.id)]).await?;
        let first = workflow_get(&client, &args.id).await?;
        if !is_terminal(&first) {
            let total = first["workflow"]["total_tasks"].as_u64().unwrap_or(0);
            let mode = if args.json {
                Follow::JsonLines
            } else {
                Follow::Lines
            };
            follow(&client, &mut incoming, &args.id, mode, total, timeout).await?;
        }
        let fin = workflow_get(&client, &args.id).await?;
        Ok::<_, GzError>(finish(&fin, started.elapsed(), args.json))
    }
    .await;
    client.close().await;
    Ok(result?)
}

// ------------------------------------------------------------------ following a run

/// How events are shown while following a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// A one-line progress bar on stderr (a terminal).
    Bar,
    /// A plain line per event on stderr.
    Lines,
    /// One JSON object per event on stdout.
    JsonLines,
}

impl Follow {
    fn progress() -> Follow {
        if std::io::stderr().is_terminal() {
            Follow::Bar
        } else {
            Follow::Lines
        }
    }
}

/// True when a `workflow_get` reply shows a finished workflow.
fn is_terminal(reply: &Value) -> bool {
    matches!(
        reply["workflow"]["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

fn is_terminal_event(event: &str) -> bool {
    matches!(
        event,
        events::WORKFLOW_COMPLETED | events::WORKFLOW_FAILED | events::WORKFLOW_CANCELLED
    )
}

/// Progress counters for the bar.
#[derive(Default)]
struct Counts {
    total: u64,
    finished: u64,
    failed: u64,
    skipped: u64,
}

impl Counts {
    fn from_progress(p: &Value, total: u64) -> Counts {
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        Counts {
            total: p
                .get("total_tasks")
                .and_then(Value::as_u64)
                .unwrap_or(total),
            finished: n("finished_tasks"),
            failed: n("failed_tasks"),
            skipped: n("skipped_tasks"),
        }
    }

    fn from_reply(reply: &Value) -> Counts {
        if let Some(c) = reply.get("counts").filter(|c| c.is_object()) {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            return Counts {
                total: n("total"),
                finished: n("finished"),
                failed: n("failed"),
                skipped: n("skipped"),
            };
        }
        let tasks = reply["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let st = |s: &str| tasks.iter().filter(|t| t["status"] == s).count() as u64;
        Counts {
            total: reply["workflow"]["total_tasks"]
                .as_u64()
                .unwrap_or(tasks.len() as u64),
            finished: st("completed") + st("failed") + st("skipped") + st("cancelled"),
            failed: st("failed"),
            skipped: st("skipped"),
        }
    }

    fn bar(&self) -> String {
        const WIDTH: u64 = 30;
        let filled = (self.finished.min(self.total) * WIDTH)
            .checked_div(self.total)
            .unwrap_or(WIDTH);
        let mut s = format!(
            "[{}{}] {}/{} done",
            "#".repeat(filled as usize),
            ".".repeat((WIDTH - filled) as usize),
            self.finished,
            self.total
        );
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
        }
        if self.skipped > 0 {
            s.push_str(&format!(", {} skipped", self.skipped));
        }
        s
    }
}

fn draw_bar(counts: &Counts) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{}", counts.bar());
    let _ = err.flush();
}

/// A plain line describing an event, if it is worth one.
/// Events already shown (by `seq`), so a catch-up after a reconnect shows each event once.
#[derive(Default)]
struct Shown {
    seen: std::collections::HashSet<u64>,
    last_seq: u64,
}

impl Shown {
    /// Shows one event (unless already shown); true when it ends the workflow.
    fn show(
        &mut self,
        mode: Follow,
        event: &str,
        ts: u64,
        payload: &Value,
        counts: &mut Counts,
        stream: &mut StreamedText,
    ) -> bool {
        if let Some(seq) = payload.get("seq").and_then(Value::as_u64) {
            if !self.seen.insert(seq) {
                return false;
            }
            // The highest number up to which every event was shown.
            while self.seen.contains(&(self.last_seq + 1)) {
                self.last_seq += 1;
            }
        }
        match mode {
            Follow::JsonLines => {
                println!(
                    "{}",
                    json!({ "event": event, "ts": ts, "payload": payload })
                );
            }
            Follow::Lines => {
                if event == events::TASK_PROGRESS {
                    stream.show(payload);
                } else if let Some(line) = event_line(event, payload) {
                    stream.end();
                    eprintln!("{line}");
                }
            }
            Follow::Bar => {
                if event == events::WORKFLOW_PROGRESS || is_terminal_event(event) {
                    *counts = Counts::from_progress(payload, counts.total);
                    draw_bar(counts);
                }
            }
        }
        is_terminal_event(event)
    }
}

/// Streamed LLM text (`task_progress`) shown as it arrives: `task x> text…` on one line.
#[derive(Default)]
struct StreamedText {
    task: Option<String>,
}

impl StreamedText {
    fn show(&mut self, p: &Value) {
        use std::io::Write;
        let task = p["task_id"].as_str().unwrap_or("?");
        if self.task.as_deref() != Some(task) {
            self.end();
            eprint!("task {task}> ");
            self.task = Some(task.to_string());
        }
        eprint!("{}", p["text"].as_str().unwrap_or_default());
        let _ = std::io::stderr().flush();
    }

    fn end(&mut self) {
        if self.task.take().is_some() {
            eprintln!();
        }
    }
}

fn event_line(event: &str, p: &Value) -> Option<String> {
    let task = p["task_id"].as_str().unwrap_or("?");
    let dur = p["duration_seconds"]
        .as_f64()
        .map(|d| format!(" ({})", render::seconds(d)))
        .unwrap_or_default();
    let line = match event {
        events::WORKFLOW_STARTED => format!(
            "workflow {} started",
            p["workflow_id"].as_str().unwrap_or("?")
        ),
        events::TASK_STARTED => {
            let on = p["provider_id"]
                .as_str()
                .map(|x| format!(" on {x}"))
                .unwrap_or_default();
            format!("task {task} started{on}")
        }
        events::TASK_COMPLETED => format!("task {task} completed{dur}"),
        events::TASK_FAILED => format!("task {task} failed: {}", render::error_short(&p["error"])),
        events::TASK_RETRYING => format!(
            "task {task} retrying after attempt {}: {}",
            p["attempt"].as_u64().unwrap_or(0),
            render::error_short(&p["error"])
        ),
        events::TASK_SKIPPED => {
            format!("task {task} skipped: {}", render::error_short(&p["error"]))
        }
        events::WORKFLOW_PROGRESS => return None,
        e if is_terminal_event(e) => {
            let c = Counts::from_progress(p, 0);
            format!(
                "workflow {} {}: {}/{} tasks finished, {} failed, {} skipped",
                p["workflow_id"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or(e),
                c.finished,
                c.total,
                c.failed,
                c.skipped
            )
        }
        _ => return None,
    };
    Some(line)
}

/// Shows the events published after the last one shown (asked from the queue-manager);
/// true when they include the workflow's end.
async fn catch_up(
    client: &HubClient,
    id: &str,
    mode: Follow,
    shown: &mut Shown,
    counts: &mut Counts,
    stream: &mut StreamedText,
) -> bool {
    let payload = json!({ "workflow_id": id, "after_seq": shown.last_seq });
    let Ok(reply) = qm_request(client, events::WORKFLOW_EVENTS, payload).await else {
        return false;
    };
    let mut done = false;
    for e in reply["events"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let event = e["event"].as_str().unwrap_or_default();
        done |= shown.show(
            mode,
            event,
            e["ts"].as_u64().unwrap_or(0),
            &e["payload"],
            counts,
            stream,
        );
    }
    done
}

/// Shows the workflow's events until it is terminal (by event, or by polling
/// `workflow_get` as a fallback, since events can be missed).
async fn follow(
    client: &HubClient,
    incoming: &mut Incoming,
    id: &str,
    mode: Follow,
    total: u64,
    timeout: Option<Duration>,
) -> Result<(), GzError> {
    let start = Instant::now();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut counts = Counts {
        total,
        ..Counts::default()
    };
    if mode == Follow::Bar {
        draw_bar(&counts);
    }
    let mut next_poll = tokio::time::Instant::now() + Duration::from_secs(1);
    let interrupt = gleitzeit_runtime::signal_shutdown();
    tokio::pin!(interrupt);
    let mut stream = StreamedText::default();
    let mut shown = Shown::default();
    let mut connection = client.connection_watch();
    if catch_up(client, id, mode, &mut shown, &mut counts, &mut stream).await {
        return Ok(());
    }
    let outcome = loop {
        let sleep_deadline = deadline.map_or(next_poll, |d| d.min(next_poll));
        tokio::select! {
            env = incoming.recv() => {
                let Some(env) = env else {
                    break Err(GzError::new(ErrorCode::Disconnected, "the connection to the hub closed"));
                };
                if env.payload.get("workflow_id").and_then(Value::as_str) != Some(id) {
                    continue;
                }
                if shown.show(mode, &env.event, env.ts, &env.payload, &mut counts, &mut stream) {
                    break Ok(());
                }
            }
            changed = connection.changed() => {
                if changed.is_err() || !*connection.borrow() {
                    continue;
                }
                // Reconnected: fetch what was published while the connection was down.
                if catch_up(client, id, mode, &mut shown, &mut counts, &mut stream).await {
                    break Ok(());
                }
            }
            _ = tokio::time::sleep_until(sleep_deadline) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    break Err(GzError::new(
                        ErrorCode::WorkflowTimeout,
                        format!("gave up waiting for workflow {id} after {}; it was not cancelled", render::seconds(start.elapsed().as_secs_f64())),
                    ).with_hint(format!("follow it with `gz watch {id}`, or stop it with `gz cancel {id}`")));
                }
                let asked = Instant::now();
                if let Ok(reply) = workflow_get_with(client, id, true).await {
                    if mode == Follow::Bar {
                        counts = Counts::from_reply(&reply);
                        draw_bar(&counts);
                    }
                    if is_terminal(&reply) {
                        break Ok(());
                    }
                }
                // Large workflows make big replies: poll less often when a poll is slow.
                let wait = Duration::from_secs(1).max(asked.elapsed() * 4);
                next_poll = tokio::time::Instant::now() + wait;
            }
            _ = &mut interrupt => {
                break Err(GzError::new(ErrorCode::Cancelled, format!("interrupted while waiting for workflow {id}"))
                    .with_hint(format!("the workflow was not cancelled; follow it with `gz watch {id}`")));
            }
        }
    };
    if mode == Follow::Bar {
        eprintln!();
    }
    outcome
}

/// Prints the final state (human table or one JSON document); returns the exit code.
fn finish(reply: &Value, elapsed: Duration, json_out: bool) -> u8 {
    let summary = render::summary(reply, elapsed);
    if json_out {
        println!("{summary}");
    } else {
        render::print_summary(&summary);
    }
    if summary["status"] == "completed" {
        0
    } else {
        1
    }
}
