//! Workflow commands that read a file or follow a run: `gz validate`, `gz run`, `gz submit`,
//! `gz watch` (the following itself is in `crate::follow`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gleitzeit_hub_client::{HubClient, Incoming};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types, rooms};
use gleitzeit_protocol::payloads::{ComponentInfo, SubmitWorkflow, WorkflowRef};
use gleitzeit_protocol::status::TaskStatus;
use gleitzeit_protocol::Target;
use gleitzeit_runtime::LogFormat;
use gleitzeit_workflow::{parse_workflow, Diagnostic, MethodCatalog, Parsed, WorkflowSpec};
use serde_json::{json, Value};

use crate::attach::{attach, Origin};
use crate::follow::{follow, is_terminal, Follow};
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
    /// Also print the workflow as the suite will run it (the original's `type:` dialect
    /// normalised to `method:`/`parameters:`; ids, names and dependencies filled in).
    #[arg(long)]
    pub explain: bool,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `gz run` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The workflow file (YAML).
    #[arg(required_unless_present_any = ["workflow", "function", "text", "vision", "batch_folder"])]
    pub file: Option<PathBuf>,
    /// The workflow file (the same as giving it first).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["file", "function", "text", "vision", "batch_folder"])]
    pub workflow: Option<PathBuf>,
    /// Run one named function instead of a file (`python/function`; `gz functions list`
    /// shows them), with `--args`.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["file", "text", "vision"])]
    pub function: Option<String>,
    /// Arguments of `--function`: `KEY=VALUE` each; a VALUE that reads as JSON (`10`,
    /// `[1,2]`, `true`, `"text"`) keeps its type, anything else is a string.
    #[arg(long = "args", value_name = "KEY=VALUE", num_args = 1.., requires = "function")]
    pub function_args: Vec<String>,
    /// Only a provider of this service may run `--function` (`builtin`: the python-provider).
    #[arg(long, value_name = "SERVICE", requires = "function")]
    pub service: Option<String>,
    /// Ask an LLM one question (an `llm/chat` task; `--model` picks the model).
    #[arg(long, value_name = "PROMPT", conflicts_with_all = ["file", "vision", "batch_folder"])]
    pub text: Option<String>,
    /// Ask a vision model about these images (an `llm/vision` task with `--prompt`).
    #[arg(long, value_name = "IMAGE", num_args = 1.., conflicts_with_all = ["file", "batch_folder"])]
    pub vision: Vec<PathBuf>,
    /// The question of `--vision`, or of every file of `--batch-folder`.
    #[arg(long)]
    pub prompt: Option<String>,
    /// The model of `--text` (default llama3.2:latest) or `--vision` (default llava:latest).
    #[arg(long)]
    pub model: Option<String>,
    /// Batch processing: one task per file.
    #[command(flatten)]
    pub batch: crate::batch::BatchFlags,
    /// Print one JSON document with the final state.
    #[arg(long)]
    pub json: bool,
    /// Stop waiting after this many seconds (the workflow is not cancelled).
    #[arg(long)]
    pub timeout: Option<f64>,
    /// When not on a terminal, print every task's events and every task's row even for a
    /// run of more than 50 tasks (which otherwise prints progress lines and a summary: the
    /// counts and the failed tasks).
    #[arg(long)]
    pub each_task: bool,
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
    /// `ID` or `workflow ID`: a workflow; `task ID`: one task; `queue`: the queue.
    #[arg(required = true, num_args = 1..=2, value_name = "WHAT")]
    pub what: Vec<String>,
    /// `watch task`: the task's workflow (default: the newest workflow with such a task).
    #[arg(long)]
    pub workflow: Option<String>,
    /// `watch queue`: print one snapshot and exit.
    #[arg(long)]
    pub once: bool,
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

/// A request to the queue-manager with the long timeout. Every caller asks something safe
/// to ask twice (reads; a cancel), so a lost connection (GZ1031, e.g. its hub of a mesh
/// died) or a moment without a queue-manager (GZ1020) is asked again within the timeout.
pub async fn qm_request(client: &HubClient, event: &str, payload: Value) -> Result<Value, GzError> {
    client
        .request_retrying(queue_manager(), event, payload, QM_TIMEOUT, QM_TIMEOUT)
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

/// Tasks per `workflow_get` page when `gz` reads a workflow's tasks (1 to 10,000;
/// `GLEITZEIT_TASKS_PAGE` sets it).
fn tasks_page() -> usize {
    std::env::var("GLEITZEIT_TASKS_PAGE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(5_000)
        .clamp(1, gleitzeit_protocol::payloads::MAX_TASKS_PAGE)
}

/// `workflow_get` for one workflow with every task, read in pages ([`tasks_page`]) (the
/// task list of a big workflow does not fit one message). One document, as one read gives.
pub async fn workflow_get(client: &HubClient, id: &str) -> Result<Value, GzError> {
    workflow_tasks(client, id, None, usize::MAX).await
}

/// `workflow_get` with at most `most` tasks (those of `status` when it is given), read in
/// pages; `next_offset` is left out of the document.
pub async fn workflow_tasks(
    client: &HubClient,
    id: &str,
    status: Option<TaskStatus>,
    most: usize,
) -> Result<Value, GzError> {
    let page_size = tasks_page();
    let mut ask = WorkflowRef {
        status,
        limit: Some(page_size.min(most).max(1)),
        ..WorkflowRef::id(id)
    };
    let mut doc = workflow_ref(client, &ask).await?;
    let mut tasks = match doc.get_mut("tasks").map(Value::take) {
        Some(Value::Array(tasks)) => tasks,
        _ => Vec::new(),
    };
    let mut next = doc["next_offset"].as_u64();
    while let Some(offset) = next.filter(|_| tasks.len() < most) {
        ask.offset = usize::try_from(offset).unwrap_or(usize::MAX);
        ask.limit = Some(page_size.min(most - tasks.len()));
        let mut page = workflow_ref(client, &ask).await?;
        if let Some(Value::Array(more)) = page.get_mut("tasks").map(Value::take) {
            tasks.extend(more);
        }
        next = page["next_offset"].as_u64();
    }
    if let Some(map) = doc.as_object_mut() {
        map.remove("next_offset");
        map.insert("tasks".into(), Value::Array(tasks));
    }
    Ok(doc)
}

/// `workflow_get` for one workflow; `summary` leaves out the task list.
pub async fn workflow_get_with(
    client: &HubClient,
    id: &str,
    summary: bool,
) -> Result<Value, GzError> {
    workflow_ref(
        client,
        &WorkflowRef {
            summary,
            ..WorkflowRef::id(id)
        },
    )
    .await
}

async fn workflow_ref(client: &HubClient, ask: &WorkflowRef) -> Result<Value, GzError> {
    let payload = serde_json::to_value(ask).unwrap_or(Value::Null);
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

/// Reads and parses a file, expands a batch and reads the files its tasks name (so they
/// travel with it, `crate::attach`); on diagnostics prints them (stderr, unless `json`) and
/// fails.
fn load(path: &Path, json_out: bool) -> Result<(WorkflowSpec, PathBuf), GzError> {
    let (text, dir) = read_file(path)?;
    match parse(&text) {
        Ok(mut parsed) => {
            if !json_out {
                for w in &parsed.warnings {
                    eprintln!("{w}");
                }
            }
            let made = crate::batch::expand(&mut parsed.spec, &dir)?;
            let notes = attach(&mut parsed.spec, Origin::File(&dir), made)?;
            print_notes(&notes, json_out);
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
    let (valid, diags, tasks, spec) = match parse(&text) {
        Ok(p) => (true, p.warnings, p.spec.tasks.len(), Some(p.spec)),
        Err(d) => (false, d, 0, None),
    };
    if args.json {
        let mut doc = json!({ "valid": valid, "diagnostics": diags });
        if valid {
            doc["total_tasks"] = json!(tasks);
        }
        if let (true, Some(spec)) = (args.explain, &spec) {
            doc["normalized"] = spec.explained();
        }
        println!("{doc}");
    } else {
        for d in &diags {
            println!("{d}");
        }
        if let (true, Some(spec)) = (args.explain, &spec) {
            // The workflow as the suite sees it: the original's dialect normalised, ids,
            // names, protocols and dependencies filled in.
            let explained = spec.explained();
            match serde_saphyr::to_string(&explained) {
                Ok(yaml) => println!("# normalized\n{yaml}"),
                Err(e) => println!("# normalized (as JSON: {e})\n{explained}"),
            }
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
    let spec = gleitzeit_protocol::records::JsonText::of(spec)
        .map_err(|e| GzError::new(ErrorCode::Internal, format!("cannot encode the spec: {e}")))?;
    // Written as text (a big spec goes in parts: `docs/protocol.md`, "Big messages in parts").
    let payload = gleitzeit_protocol::records::JsonText::of(&SubmitWorkflow {
        workflow_id: Some(id.to_string()),
        spec,
        base_dir: Some(base_dir.to_string_lossy().into_owned()),
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
    })
    .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?;
    // The key makes the submit safe to repeat: when no queue-manager is connected for a
    // moment (GZ1020) or the connection drops, it is sent again within the timeout.
    client
        .request_retrying_in_parts(
            queue_manager(),
            events::WORKFLOW_SUBMIT,
            payload,
            QM_TIMEOUT,
            QM_TIMEOUT,
        )
        .await
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

/// `gz run FILE | --workflow FILE | --function NAME | --text PROMPT | --vision IMAGE… [--json]
/// [--timeout SECS] [--data-dir DIR]`.
pub async fn run(hub_url: &str, log_format: LogFormat, args: RunArgs) -> CmdResult {
    let (spec, dir) = match args.file.as_ref().or(args.workflow.as_ref()) {
        Some(file) => load(file, args.json)?,
        None => one_shot(&args)?,
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
    let result = run_on_hub(
        hub_url,
        &spec,
        &dir,
        RunOutput {
            json: args.json,
            each_task: args.each_task,
            timeout,
            results_to: args.batch.output.as_deref(),
        },
    )
    .await;
    if let Some(s) = suite {
        s.shutdown().await;
    }
    result
}

/// A workflow of one task from `gz run --function`, `--text` or `--vision`, written in the
/// original's dialect and read like a file, so it is checked the same way (a built-in
/// function's arguments against its schema, an LLM task's parameters against `llm/*`).
fn one_shot(args: &RunArgs) -> Result<(WorkflowSpec, PathBuf), GzError> {
    let dir = std::env::current_dir().unwrap_or_default();
    if let Some(folder) = &args.batch.batch_folder {
        let function = match &args.function {
            Some(name) => Some((name.as_str(), key_values(&args.function_args)?)),
            None => None,
        };
        let doc = crate::batch::document(
            &args.batch,
            folder,
            args.prompt.as_deref(),
            args.model.as_deref(),
            function,
        )?;
        let mut spec = parse_one_shot(&doc, "batch-folder", args.json)?;
        let made = crate::batch::expand(&mut spec, &dir)?;
        attach(&mut spec, Origin::CommandLine(&dir), made)?;
        return Ok((spec, dir));
    }
    let (id, mut task) = if let Some(name) = &args.function {
        let mut task = json!({ "type": "function", "function_name": name, "kwargs": key_values(&args.function_args)? });
        if let Some(service) = &args.service {
            task["service_name"] = json!(service);
        }
        (name.clone(), task)
    } else if let Some(prompt) = &args.text {
        (
            "text".to_string(),
            json!({ "type": "text", "prompt": prompt }),
        )
    } else if !args.vision.is_empty() {
        if args.prompt.is_none() {
            return Err(GzError::new(ErrorCode::Usage, "--vision needs --prompt"));
        }
        let images: Vec<String> = args
            .vision
            .iter()
            .map(|p| dir.join(p).display().to_string())
            .collect();
        let prompt = args.prompt.clone().unwrap_or_default();
        (
            "vision".to_string(),
            json!({ "type": "vision", "prompt": prompt, "image_paths": images }),
        )
    } else {
        return Err(GzError::new(
            ErrorCode::Usage,
            "give a workflow file, or --function, --text or --vision",
        ));
    };
    if let Some(model) = &args.model {
        task["model"] = json!(model);
    }
    task["id"] = json!(id);
    let doc = json!({ "name": format!("gz run {id}"), "tasks": [task] });
    let mut spec = parse_one_shot(&doc, &id, args.json)?;
    attach(&mut spec, Origin::CommandLine(&dir), 0..0)?;
    Ok((spec, dir))
}

/// Says which named files stay paths (stderr, unless `json`; the first few of many).
fn print_notes(notes: &[String], json_out: bool) {
    const SHOWN: usize = 5;
    if json_out {
        return;
    }
    for note in notes.iter().take(SHOWN) {
        eprintln!("note: {note}");
    }
    if notes.len() > SHOWN {
        eprintln!(
            "note: … and {} more files outside the workflow's folder",
            notes.len() - SHOWN
        );
    }
}

/// Reads a command line's workflow document. JSON is YAML: it goes through the same parser
/// and checks as a file.
fn parse_one_shot(doc: &Value, what: &str, json_out: bool) -> Result<WorkflowSpec, GzError> {
    match parse(&doc.to_string()) {
        Ok(parsed) => Ok(parsed.spec),
        Err(diags) => {
            if !json_out {
                for d in &diags {
                    eprintln!("{d}");
                }
            }
            Err(invalid(Path::new(&format!("gz run --{what}")), &diags))
        }
    }
}

/// `KEY=VALUE` pairs as an object; a VALUE that reads as JSON keeps its type.
fn key_values(pairs: &[String]) -> Result<Value, GzError> {
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
    Ok(Value::Object(kwargs))
}

/// The longest `--timeout` (a year): a deadline this far off is still a valid instant.
const MAX_WAIT_SECS: f64 = 365.0 * 86_400.0;

fn timeout_of(secs: Option<f64>) -> Result<Option<Duration>, GzError> {
    match secs {
        None => Ok(None),
        Some(s) if s > 0.0 && s <= MAX_WAIT_SECS => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| GzError::new(ErrorCode::Usage, format!("--timeout {s}: {e}"))),
        Some(s) => Err(GzError::new(
            ErrorCode::Usage,
            format!("--timeout must be more than 0 and at most {MAX_WAIT_SECS} seconds, not {s}"),
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

/// How `gz run` shows a run.
struct RunOutput<'a> {
    /// One JSON document at the end (`--json`).
    json: bool,
    /// Every task even in a big run not on a terminal (`--each-task`).
    each_task: bool,
    /// `--timeout`.
    timeout: Option<Duration>,
    /// Where results are written (`--output` of a batch).
    results_to: Option<&'a Path>,
}

async fn run_on_hub(
    hub_url: &str,
    spec: &WorkflowSpec,
    dir: &Path,
    out: RunOutput<'_>,
) -> CmdResult {
    let started = Instant::now();
    let (client, mut incoming) = connect(hub_url).await?;
    let result = async {
        let id = new_workflow_id();
        // Subscribing needs the workflow to exist (a USER may watch only their own), so the
        // room is joined after the submit and `follow` first catches up on what it missed.
        let reply = submit_spec(&client, &id, spec, dir).await?;
        let total = reply
            .get("total_tasks")
            .and_then(Value::as_u64)
            .unwrap_or(spec.tasks.len() as u64);
        let mode = Follow::for_run(total, out.each_task);
        client.subscribe(&[mode.room(&id)]).await?;
        eprintln!("submitted workflow {id} ({}, {total} tasks)", spec.name);
        follow(&client, &mut incoming, &id, mode, total, out.timeout).await?;
        let shown = if mode == Follow::Summary {
            Shown::Summary
        } else {
            Shown::EachTask
        };
        // A summary for people needs the counts and the first failed tasks only; the JSON
        // document and a results file need every task.
        let fin = if shown == Shown::Summary && !out.json && out.results_to.is_none() {
            workflow_tasks(
                &client,
                &id,
                Some(TaskStatus::Failed),
                render::FAILED_LISTED,
            )
            .await?
        } else {
            workflow_get(&client, &id).await?
        };
        if let Some(path) = out.results_to {
            crate::batch::write(&fin, path)?;
            eprintln!("results written to {}", path.display());
        }
        Ok::<_, GzError>(finish(&fin, started.elapsed(), out.json, shown))
    }
    .await;
    client.close().await;
    Ok(result?)
}

// ------------------------------------------------------------------ watch

/// `gz watch ID [--json]`.
pub async fn watch(hub_url: &str, args: WatchArgs) -> CmdResult {
    let timeout = timeout_of(args.timeout)?;
    let id = match args.what.as_slice() {
        [what] if what == "queue" => {
            return crate::watching::queue(hub_url, args.once, args.json).await
        }
        [what, id] if what == "task" => {
            return crate::watching::task(hub_url, id, args.workflow.as_deref(), args.json, timeout)
                .await
        }
        [what, id] if what == "workflow" => id.clone(),
        [id] => id.clone(),
        other => {
            return Err(GzError::new(
                ErrorCode::Usage,
                format!("cannot watch {:?}", other.join(" ")),
            )
            .with_hint("gz watch ID | gz watch workflow ID | gz watch task ID | gz watch queue")
            .into())
        }
    };
    let started = Instant::now();
    let (client, mut incoming) = connect(hub_url).await?;
    let result = async {
        client.subscribe(&[rooms::workflow(&id)]).await?;
        let first = workflow_get_with(&client, &id, true).await?;
        if !is_terminal(&first) {
            let total = first["workflow"]["total_tasks"].as_u64().unwrap_or(0);
            let mode = if args.json {
                Follow::JsonLines
            } else {
                Follow::Lines
            };
            follow(&client, &mut incoming, &id, mode, total, timeout).await?;
        }
        let fin = workflow_get(&client, &id).await?;
        Ok::<_, GzError>(finish(&fin, started.elapsed(), args.json, Shown::EachTask))
    }
    .await;
    client.close().await;
    Ok(result?)
}

// ------------------------------------------------------------------ following a run

/// What the final state shows for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    /// A row per task.
    EachTask,
    /// The counts and the failed tasks (a big run not on a terminal).
    Summary,
}

/// Prints the final state (human table or one JSON document); returns the exit code.
fn finish(reply: &Value, elapsed: Duration, json_out: bool, shown: Shown) -> u8 {
    let summary = render::summary(reply, elapsed);
    if json_out {
        println!("{summary}");
    } else if shown == Shown::Summary {
        render::print_short_summary(&summary);
    } else {
        render::print_summary(&summary);
    }
    if summary["status"] == "completed" {
        0
    } else {
        1
    }
}
