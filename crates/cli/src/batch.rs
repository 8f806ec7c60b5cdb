//! Batch processing from the command line: `gz run --batch-folder DIR …` (one task per
//! file, made from `--type text|vision|function` and `--prompt`/`--function`), the expansion
//! of a workflow file's `batch:` block (`gleitzeit_workflow::batch`), and the per-file
//! results as JSON lines, CSV or Markdown (`gz run … --output FILE`, `gz batch results ID
//! --format jsonl|csv|md`). `--fail-fast` and `--aggregate PROMPT` are the command line's
//! `fail_fast: true` and a `tolerate_failures` task reading `${file.results}`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_workflow::batch::{self, Batch, BatchError};
use gleitzeit_workflow::WorkflowSpec;
use serde_json::{json, Value};

use crate::workflow::{connect, workflow_get};
use crate::CmdResult;

/// The batch flags of `gz run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BatchFlags {
    /// Run one task per file of this folder (see --type, --pattern, --extensions).
    #[arg(long, value_name = "DIR")]
    pub batch_folder: Option<PathBuf>,
    /// Only files whose name matches (`*` and `?`), e.g. `*.md`.
    #[arg(long, requires = "batch_folder")]
    pub pattern: Option<String>,
    /// Only files with these endings, comma-separated, e.g. `.txt,.md`.
    #[arg(long, value_delimiter = ',', requires = "batch_folder")]
    pub extensions: Vec<String>,
    /// Search sub-folders too.
    #[arg(long, requires = "batch_folder")]
    pub recursive: bool,
    /// What each file's task does: `text` (the file's text after --prompt, to an LLM),
    /// `vision` (the image with --prompt) or `function` (--function NAME with file_path).
    #[arg(long = "type", value_name = "TYPE", value_parser = ["text", "vision", "function"], requires = "batch_folder")]
    pub task_type: Option<String>,
    /// At most this many files (default 100,000).
    #[arg(long, requires = "batch_folder")]
    pub max_files: Option<u64>,
    /// Stop at the first file that fails (the rest is cancelled); by default the others go on.
    #[arg(long, requires = "batch_folder")]
    pub fail_fast: bool,
    /// After the files, one more LLM task gets this prompt followed by every file's result
    /// or error (JSON, in file order) and runs even when some files failed.
    #[arg(long, value_name = "PROMPT", requires = "batch_folder")]
    pub aggregate: Option<String>,
    /// Write every file's result here when the run ends: `.jsonl`, `.csv` or `.md`.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The workflow file's form of a `--batch-folder` run (validated like a file).
pub fn document(
    flags: &BatchFlags,
    folder: &Path,
    prompt: Option<&str>,
    model: Option<&str>,
    function: Option<(&str, Value)>,
) -> Result<Value, GzError> {
    let kind = flags.task_type.as_deref().unwrap_or(if function.is_some() {
        "function"
    } else {
        "text"
    });
    let mut template = match kind {
        "function" => {
            let (name, kwargs) = function.ok_or_else(|| {
                GzError::new(ErrorCode::Usage, "--type function needs --function NAME")
            })?;
            json!({ "type": "function", "function_name": name, "kwargs": kwargs })
        }
        other => {
            let prompt = prompt.ok_or_else(|| {
                GzError::new(ErrorCode::Usage, format!("--type {other} needs --prompt"))
            })?;
            json!({ "type": other, "prompt": prompt })
        }
    };
    if let Some(m) = model {
        template["model"] = json!(m);
    }
    let mut settings =
        json!({ "directory": folder.display().to_string(), "recursive": flags.recursive });
    if let Some(p) = &flags.pattern {
        settings["pattern"] = json!(p);
    }
    if !flags.extensions.is_empty() {
        settings["extensions"] = json!(flags.extensions);
    }
    if let Some(n) = flags.max_files {
        settings["max_files"] = json!(n);
    }
    if flags.fail_fast {
        settings["fail_fast"] = json!(true);
    }
    let mut doc = json!({
        "name": format!("batch {}", folder.display()),
        "batch": settings,
        "template": template,
    });
    if let Some(prompt) = &flags.aggregate {
        doc["tasks"] = json!([aggregate_task(prompt, model)]);
    }
    Ok(doc)
}

/// The `--aggregate` task: an LLM task after the whole batch (the template's id is `file`)
/// that tolerates failed files and reads every outcome after its prompt.
fn aggregate_task(prompt: &str, model: Option<&str>) -> Value {
    // `$${` keeps a `${` of the user's prompt literal.
    let prompt = prompt.replace("${", "$${");
    let mut task = json!({
        "id": "aggregate",
        "name": "(aggregate)",
        "type": "text",
        "prompt": format!("{prompt}\n\nThe results, one per file, in order (JSON):\n${{file.results}}"),
        "tolerate_failures": true,
    });
    if let Some(m) = model {
        task["model"] = json!(m);
    }
    task
}

/// Expands a batch workflow (`metadata.batch`) into one task per file, the folder taken
/// relative to `dir`; other workflows are left as they are. Returns the positions of the
/// tasks made (none for other workflows).
pub fn expand(spec: &mut WorkflowSpec, dir: &Path) -> Result<Range<usize>, GzError> {
    let Some((settings, template)) = Batch::of(spec) else {
        return Ok(0..0);
    };
    let files = batch::list_files(&settings, dir).map_err(|e| match e {
        BatchError::TooMany { .. } => GzError::new(ErrorCode::TooLarge, e.to_string())
            .with_hint("narrow --pattern/--extensions, or raise max_files"),
        other => GzError::new(ErrorCode::BatchFolderNotFound, other.to_string()),
    })?;
    let total = files.len() + spec.tasks.len() - 1;
    if total > gleitzeit_workflow::DEFAULT_MAX_TASKS {
        return Err(GzError::new(
            ErrorCode::TooLarge,
            format!(
                "the batch makes {total} tasks, more than {}",
                gleitzeit_workflow::DEFAULT_MAX_TASKS
            ),
        ));
    }
    Ok(batch::expand(
        spec,
        &template,
        &files,
        &dir.join(&settings.directory),
    ))
}

/// One row per task: its name (the file), status, result or error.
fn rows(reply: &Value) -> Vec<Value> {
    reply["tasks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|t| {
            let result = &t["result"];
            // The useful part: an LLM's text, a function's or script's value.
            let value = result
                .get("response")
                .or_else(|| result.get("result"))
                .unwrap_or(result);
            json!({
                "task_id": t["task_id"], "file": t["name"], "status": t["status"],
                "result": value, "error_code": t["error"]["code"], "error": t["error"]["message"],
            })
        })
        .collect()
}

fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn md_field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The results of a `workflow_get` reply in `format` (`jsonl`, `csv` or `md`).
pub fn render(reply: &Value, format: &str) -> Result<String, GzError> {
    let rows = rows(reply);
    const COLUMNS: [&str; 6] = ["task_id", "file", "status", "result", "error_code", "error"];
    let mut out = String::new();
    match format {
        "jsonl" | "json" => {
            for r in rows {
                out.push_str(&r.to_string());
                out.push('\n');
            }
        }
        "csv" => {
            out.push_str(&COLUMNS.join(","));
            out.push('\n');
            for r in rows {
                let line: Vec<String> = COLUMNS.iter().map(|c| csv_field(&r[*c])).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
        }
        "md" | "markdown" => {
            out.push_str(&format!(
                "| {} |\n|{}\n",
                COLUMNS.join(" | "),
                "---|".repeat(COLUMNS.len())
            ));
            for r in rows {
                let line: Vec<String> = COLUMNS.iter().map(|c| md_field(&r[*c])).collect();
                out.push_str(&format!("| {} |\n", line.join(" | ")));
            }
        }
        other => {
            return Err(
                GzError::new(ErrorCode::Usage, format!("unknown format {other:?}"))
                    .with_hint("formats: jsonl, csv, md"),
            )
        }
    }
    Ok(out)
}

/// Writes the results to `path`, in the format its ending names.
pub fn write(reply: &Value, path: &Path) -> Result<(), GzError> {
    let format = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("jsonl")
        .to_ascii_lowercase();
    let text = render(reply, &format)?;
    std::fs::write(path, text).map_err(|e| {
        GzError::new(
            ErrorCode::FileNotFound,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}

/// `gz batch` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub command: BatchCommand,
}

/// `gz batch` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BatchCommand {
    /// Every file's result of a (batch) workflow, as JSON lines, CSV or Markdown.
    Results {
        /// The workflow id.
        id: String,
        /// jsonl, csv or md.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv", "md"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `gz batch results ID`.
pub async fn run(hub_url: &str, args: BatchArgs) -> CmdResult {
    let BatchCommand::Results { id, format, output } = args.command;
    let (client, _incoming) = connect(hub_url).await?;
    let reply = workflow_get(&client, &id).await;
    client.close().await;
    let text = render(&reply?, &format)?;
    match output {
        Some(path) => std::fs::write(&path, text).map_err(|e| {
            GzError::new(
                ErrorCode::FileNotFound,
                format!("cannot write {}: {e}", path.display()),
            )
        })?,
        None => print!("{text}"),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_render_as_jsonl_csv_and_markdown() {
        let reply = json!({ "tasks": [
            { "task_id": "file-1", "name": "a.txt", "status": "completed", "result": { "response": "one, \"two\"" }, "error": null },
            { "task_id": "file-2", "name": "b.bin", "status": "failed", "result": null, "error": { "code": "GZ2028", "message": "not text" } },
        ]});
        let jsonl = render(&reply, "jsonl").expect("jsonl");
        assert_eq!(jsonl.lines().count(), 2);
        let first: Value =
            serde_json::from_str(jsonl.lines().next().unwrap_or_default()).expect("json");
        assert_eq!(first["result"], "one, \"two\"");
        let csv = render(&reply, "csv").expect("csv");
        assert!(
            csv.contains("file-1,a.txt,completed,\"one, \"\"two\"\"\",,"),
            "{csv}"
        );
        assert!(
            csv.contains("file-2,b.bin,failed,,GZ2028,not text"),
            "{csv}"
        );
        let md = render(&reply, "md").expect("md");
        assert!(md.starts_with("| task_id | file |"), "{md}");
        assert!(render(&reply, "xml").is_err());
    }
}
