//! Queries about workflows already submitted: `gz inspect`, `gz list`, `gz cancel`
//! (`gz inspect node` is in `crate::node`).

use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{ListWorkflows, TaskLookup, WorkflowRef};
use serde_json::Value;

use crate::render;
use crate::workflow::{connect, qm_request, workflow_get};
use crate::CmdResult;

/// `gz inspect` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: InspectWhat,
}

/// What to inspect.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum InspectWhat {
    /// A workflow and its tasks.
    Workflow {
        /// Workflow id.
        id: String,
        /// Print the raw reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One task.
    Task {
        /// Task id.
        task_id: String,
        /// The workflow it belongs to (default: the newest workflow with such a task).
        #[arg(long)]
        workflow: Option<String>,
        /// Print the raw reply as JSON.
        #[arg(long)]
        json: bool,
    },
    /// One component (node) of the hub's table: health, load, what it serves.
    Node {
        /// Component id (or a unique prefix of one).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl InspectArgs {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match &self.what {
            InspectWhat::Workflow { json, .. }
            | InspectWhat::Task { json, .. }
            | InspectWhat::Node { json, .. } => *json,
        }
    }
}

/// `gz list` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// At most this many workflows (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Only workflows with this status (pending, running, completed, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
    /// Print the raw reply as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `gz cancel` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CancelArgs {
    /// Workflow id.
    pub id: String,
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs one queue-manager request on a fresh connection.
async fn ask(hub_url: &str, event: &str, payload: Value) -> Result<Value, GzError> {
    let (client, _incoming) = connect(hub_url).await?;
    let result = if event == events::WORKFLOW_GET {
        let id = payload["workflow_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        workflow_get(&client, &id).await
    } else {
        qm_request(&client, event, payload).await
    };
    client.close().await;
    result
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn text(v: &Value) -> String {
    if v.is_null() {
        "-".into()
    } else {
        render::compact(v)
    }
}

fn time(v: &Value) -> String {
    v.as_u64().map(render::time).unwrap_or_else(|| "-".into())
}

/// `gz inspect workflow ID` / `gz inspect task TASK_ID`.
pub async fn inspect(hub_url: &str, args: InspectArgs) -> CmdResult {
    match args.what {
        InspectWhat::Node { id, json } => crate::node::inspect(hub_url, &id, json).await,
        InspectWhat::Workflow { id, json } => {
            let payload = to_value(&WorkflowRef::id(id));
            let reply = ask(hub_url, events::WORKFLOW_GET, payload).await?;
            if json {
                println!("{reply}");
                return Ok(0);
            }
            let w = &reply["workflow"];
            let tasks = reply["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            println!("workflow  {}", text(&w["id"]));
            println!("name      {}", text(&w["name"]));
            println!("status    {}", text(&w["status"]));
            println!("tasks     {}", text(&w["total_tasks"]));
            println!("created   {}", time(&w["created_at"]));
            println!("started   {}", time(&w["started_at"]));
            println!("finished  {}", time(&w["finished_at"]));
            if let (Some(s), Some(f)) = (w["created_at"].as_u64(), w["finished_at"].as_u64()) {
                println!(
                    "duration  {}",
                    render::seconds(f.saturating_sub(s) as f64 / 1000.0)
                );
            }
            if let Some(dir) = w["base_dir"].as_str() {
                println!("base dir  {dir}");
            }
            if !w["error"].is_null() {
                println!("error     {}", render::error_short(&w["error"]));
            }
            println!();
            render::print_task_table(tasks);
            Ok(0)
        }
        InspectWhat::Task {
            task_id,
            workflow,
            json,
        } => {
            let payload = to_value(&TaskLookup {
                workflow_id: workflow,
                task_id,
            });
            let t = ask(hub_url, events::TASK_GET, payload).await?;
            if json {
                println!("{t}");
                return Ok(0);
            }
            println!("task      {}", text(&t["task_id"]));
            println!("workflow  {}", text(&t["workflow_id"]));
            println!("name      {}", text(&t["name"]));
            println!("method    {}", text(&t["method"]));
            println!("status    {}", text(&t["status"]));
            println!("attempts  {}", text(&t["attempts"]));
            println!("priority  {}", text(&t["priority"]));
            println!("provider  {}", text(&t["provider_id"]));
            println!("queued    {}", time(&t["queued_at"]));
            println!("started   {}", time(&t["started_at"]));
            println!("finished  {}", time(&t["finished_at"]));
            if let (Some(s), Some(f)) = (t["started_at"].as_u64(), t["finished_at"].as_u64()) {
                println!(
                    "duration  {}",
                    render::seconds(f.saturating_sub(s) as f64 / 1000.0)
                );
            }
            for key in ["params", "result", "error"] {
                if !t[key].is_null() {
                    let pretty = serde_json::to_string_pretty(&t[key])
                        .unwrap_or_else(|_| t[key].to_string());
                    println!("{key}:");
                    for line in pretty.lines() {
                        println!("  {line}");
                    }
                }
            }
            Ok(0)
        }
    }
}

/// `gz list [--limit N] [--status S] [--json]`.
pub async fn list(hub_url: &str, args: ListArgs) -> CmdResult {
    let payload = to_value(&ListWorkflows {
        limit: Some(args.limit),
        status: args.status,
    });
    let reply = ask(hub_url, events::WORKFLOW_LIST, payload).await?;
    if args.json {
        println!("{reply}");
        return Ok(0);
    }
    let list = reply.as_array().map(Vec::as_slice).unwrap_or(&[]);
    if list.is_empty() {
        println!("no workflows");
        return Ok(0);
    }
    let id_w = list
        .iter()
        .map(|w| w["id"].as_str().map_or(0, str::len))
        .max()
        .unwrap_or(0)
        .max(2);
    let name_w = list
        .iter()
        .map(|w| w["name"].as_str().map_or(0, |n| n.chars().count()))
        .max()
        .unwrap_or(0)
        .clamp(4, 40);
    println!(
        "{:<id_w$}  {:<name_w$}  {:<9}  {:>7}  CREATED",
        "ID", "NAME", "STATUS", "TASKS"
    );
    for w in list {
        let name: String = w["name"].as_str().unwrap_or("").chars().take(40).collect();
        println!(
            "{:<id_w$}  {:<name_w$}  {:<9}  {:>7}  {}",
            w["id"].as_str().unwrap_or("?"),
            name,
            w["status"].as_str().unwrap_or("?"),
            w["total_tasks"].as_u64().unwrap_or(0),
            time(&w["created_at"]),
        );
    }
    Ok(0)
}

/// `gz cancel ID [--json]`.
pub async fn cancel(hub_url: &str, args: CancelArgs) -> CmdResult {
    let payload = to_value(&WorkflowRef::id(args.id.clone()));
    let reply = ask(hub_url, events::WORKFLOW_CANCEL, payload).await?;
    let cancelled = reply["cancelled"].as_bool() == Some(true);
    let terminal = matches!(
        reply["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    );
    let code = if cancelled || terminal { 0 } else { 1 };
    if args.json {
        println!("{reply}");
    } else if cancelled {
        println!("workflow {} cancelled", args.id);
    } else {
        println!(
            "workflow {} already {}; nothing to cancel",
            args.id,
            reply["status"].as_str().unwrap_or("finished")
        );
    }
    Ok(code)
}
