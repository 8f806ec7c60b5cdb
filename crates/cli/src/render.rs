//! Rendering workflow and task records (as the queue-manager returns them) for people and
//! for `--json`.

use std::time::Duration;

use serde_json::{json, Value};

/// Longest result text shown in a table cell.
const CELL_LIMIT: usize = 200;

/// `0.01s`, `12.3s`, `2m05s`.
pub fn seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = s.round() as u64;
        if whole < 3600 {
            format!("{}m{:02}s", whole / 60, whole % 60)
        } else {
            format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
        }
    }
}

/// `GZ2025 message` (first line of the message) for an error object; `-` when absent.
pub fn error_short(error: &Value) -> String {
    if error.is_null() {
        return "-".into();
    }
    let code = error["code"].as_str().unwrap_or("");
    let message = match error["message"].as_str() {
        Some(m) => m.to_string(),
        None => compact(error),
    };
    let mut lines = message.lines();
    let first = lines.next().unwrap_or("");
    let more = if lines.next().is_some() { " …" } else { "" };
    if code.is_empty() {
        format!("{first}{more}")
    } else {
        format!("{code} {first}{more}")
    }
}

/// Compact JSON, strings without quotes.
pub fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Cuts a cell to a readable length, on one line.
pub fn cell(text: &str) -> String {
    let one_line = text.replace('\n', "\\n");
    if one_line.chars().count() > CELL_LIMIT {
        let cut: String = one_line.chars().take(CELL_LIMIT).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// What a task produced, for a table: python tasks show their `result` field, LLM tasks
/// their text (embeddings their dimensions).
pub fn result_text(task: &Value) -> String {
    let result = &task["result"];
    let method = task["method"].as_str().unwrap_or("");
    if method.starts_with("python/") {
        if let Some(inner) = result.get("result") {
            return compact(inner);
        }
    }
    if method.starts_with("llm/") {
        if let Some(text) = result.get("response") {
            return compact(text);
        }
        if let Some(d) = result.get("dimensions") {
            return format!(
                "{} embedding(s) of {} dimensions",
                result["embeddings"].as_array().map_or(0, Vec::len),
                d
            );
        }
    }
    compact(result)
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn duration_ms(start: &Value, end: &Value) -> Option<f64> {
    match (start.as_u64(), end.as_u64()) {
        (Some(s), Some(e)) => Some(e.saturating_sub(s) as f64 / 1000.0),
        _ => None,
    }
}

/// One task of the summary document.
pub fn task_doc(t: &Value) -> Value {
    json!({
        "id": t["task_id"],
        "name": t["name"],
        "method": t["method"],
        "status": t["status"],
        "result": t["result"],
        "error": t["error"],
        "attempts": t["attempts"],
        "started_at": t["started_at"],
        "finished_at": t["finished_at"],
        "duration_seconds": duration_ms(&t["started_at"], &t["finished_at"]),
        "provider_id": t["provider_id"],
    })
}

/// The summary document of `gz run --json` from a `workflow_get` reply.
pub fn summary(reply: &Value, elapsed: Duration) -> Value {
    let w = &reply["workflow"];
    let tasks: Vec<Value> = reply["tasks"]
        .as_array()
        .map(|ts| ts.iter().map(task_doc).collect())
        .unwrap_or_default();
    let duration =
        duration_ms(&w["created_at"], &w["finished_at"]).unwrap_or(elapsed.as_secs_f64());
    json!({
        "workflow_id": w["id"],
        "name": w["name"],
        "status": w["status"],
        "error": w["error"],
        "total_tasks": w["total_tasks"],
        "counts": reply["counts"],
        "tasks": tasks,
        "duration_seconds": duration,
    })
}

/// What to show for a task in a table: result, error or skip reason.
fn outcome(t: &Value) -> String {
    match t["status"].as_str() {
        Some("completed") => cell(&result_text(t)),
        Some("failed" | "skipped" | "cancelled" | "retrying") => cell(&error_short(&t["error"])),
        _ => String::new(),
    }
}

/// Prints a summary document for people.
pub fn print_summary(s: &Value) {
    let tasks = s["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    print_header(s, tasks);
    let id_w = tasks
        .iter()
        .map(|t| t["id"].as_str().map_or(0, |x| x.chars().count()))
        .max()
        .unwrap_or(0);
    for t in tasks {
        println!(
            "{:<id_w$}  {:<9}  {}",
            t["id"].as_str().unwrap_or("?"),
            t["status"].as_str().unwrap_or("?"),
            outcome(t)
        );
    }
}

/// Failed tasks a short summary lists by name.
pub const FAILED_LISTED: usize = 20;

/// How many tasks of a summary document have `status`: its `counts` (from the
/// queue-manager), or its task list when it has no counts.
fn count_of(s: &Value, tasks: &[Value], status: &str) -> u64 {
    s["counts"][status]
        .as_u64()
        .or_else(|| s["counts"].is_object().then_some(0))
        .unwrap_or_else(|| tasks.iter().filter(|t| t["status"] == status).count() as u64)
}

/// Prints a summary document of a big run for people: the header line of
/// [`print_summary`], the count of every task status, and the first failed tasks with
/// their errors (not a row per task).
pub fn print_short_summary(s: &Value) {
    let tasks = s["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    print_header(s, tasks);
    let mut by_status: std::collections::BTreeMap<&str, u64> = Default::default();
    match s["counts"].as_object() {
        Some(counts) => {
            for (st, n) in counts {
                let n = n.as_u64().unwrap_or(0);
                if n > 0 && !["total", "finished"].contains(&st.as_str()) {
                    by_status.insert(st, n);
                }
            }
        }
        None => {
            for t in tasks {
                *by_status
                    .entry(t["status"].as_str().unwrap_or("?"))
                    .or_default() += 1;
            }
        }
    }
    let counts: Vec<String> = by_status
        .iter()
        .map(|(st, n)| format!("{st}: {n}"))
        .collect();
    println!("tasks by status: {}", counts.join(", "));
    let failed: Vec<&Value> = tasks.iter().filter(|t| t["status"] == "failed").collect();
    let failed_count = count_of(s, tasks, "failed").max(failed.len() as u64);
    for t in failed.iter().take(FAILED_LISTED) {
        println!(
            "failed: {}  {}",
            t["id"].as_str().unwrap_or("?"),
            cell(&error_short(&t["error"]))
        );
    }
    let id = s["workflow_id"].as_str().unwrap_or("ID");
    if failed_count > FAILED_LISTED as u64 {
        println!(
            "… and {} more failed tasks (gz inspect workflow {id})",
            failed_count - FAILED_LISTED as u64
        );
    }
    println!("every task: gz inspect workflow {id}, or gz run --each-task");
}

fn print_header(s: &Value, tasks: &[Value]) {
    let count = |st: &str| count_of(s, tasks, st);
    println!(
        "workflow {} ({}): {} in {} — {} tasks: {} completed, {} failed, {} skipped",
        s["workflow_id"].as_str().unwrap_or("?"),
        s["name"].as_str().unwrap_or(""),
        s["status"].as_str().unwrap_or("?"),
        seconds(s["duration_seconds"].as_f64().unwrap_or(0.0)),
        s["total_tasks"].as_u64().unwrap_or(tasks.len() as u64),
        count("completed"),
        count("failed"),
        count("skipped"),
    );
    if !s["error"].is_null() {
        println!("error: {}", error_short(&s["error"]));
    }
}

/// Prints a task table (ID METHOD STATUS ATTEMPTS DURATION RESULT/ERROR) from task records.
pub fn print_task_table(tasks: &[Value]) {
    let id_w = tasks
        .iter()
        .map(|t| t["task_id"].as_str().map_or(0, |x| x.chars().count()))
        .max()
        .unwrap_or(0)
        .max(2);
    let m_w = tasks
        .iter()
        .map(|t| t["method"].as_str().map_or(0, |x| x.chars().count()))
        .max()
        .unwrap_or(0)
        .max(6);
    println!(
        "{:<id_w$}  {:<m_w$}  {:<9}  {:>8}  {:>8}  RESULT/ERROR",
        "ID", "METHOD", "STATUS", "ATTEMPTS", "DURATION"
    );
    for t in tasks {
        let dur = duration_ms(&t["started_at"], &t["finished_at"])
            .map(seconds)
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<id_w$}  {:<m_w$}  {:<9}  {:>8}  {:>8}  {}",
            t["task_id"].as_str().unwrap_or("?"),
            t["method"].as_str().unwrap_or("?"),
            t["status"].as_str().unwrap_or("?"),
            t["attempts"].as_u64().unwrap_or(0),
            dur,
            outcome(t)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(seconds(0.012), "0.01s");
        assert_eq!(seconds(125.0), "2m05s");
    }

    #[test]
    fn python_results_show_the_result_field() {
        let t = json!({"method": "python/execute", "result": {"result": 6, "stdout": ""}});
        assert_eq!(result_text(&t), "6");
        let e = json!({"code": "GZ2025", "message": "ValueError: x\nTraceback"});
        assert_eq!(error_short(&e), "GZ2025 ValueError: x …");
    }
}
