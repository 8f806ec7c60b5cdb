//! `gz bench --compare-celery` (issue 16): after Gleitzeit's own runs, the same throughput
//! and chain workloads on Celery 5 + Redis, in the same session on the same machine (timings
//! drift too much between sessions on a shared machine to compare figures taken apart).
//!
//! The baseline is `benches/celery_baseline.py`, embedded in the binary and written to a
//! temporary directory, so an installed `gz` runs it outside the repository. It starts its
//! own `redis-server` and Celery worker and stops them again; this side only bounds it in
//! time (SIGTERM, so it cleans up, then SIGKILL) and reads its JSON line. A missing Celery is
//! one line of output, a failed run a warning: neither changes `gz bench`'s exit code.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gleitzeit_launcher::Launch;
use serde_json::{json, Value};

/// The baseline script, shipped inside `gz`.
const SCRIPT: &str = include_str!("../../../benches/celery_baseline.py");

/// Lines of the script's output shown when it fails.
const TAIL_LINES: usize = 15;

/// Why there are no Celery figures.
#[derive(Debug)]
pub(crate) enum BaselineError {
    /// Celery (or Python, or redis-server) is not installed: not a failure of the run.
    NotInstalled(String),
    /// The run started and failed, or did not finish in time.
    Failed {
        /// What went wrong.
        reason: String,
        /// The end of the script's output.
        tail: String,
    },
}

impl fmt::Display for BaselineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineError::NotInstalled(what) => write!(f, "{what}"),
            BaselineError::Failed { reason, tail } if tail.is_empty() => write!(f, "{reason}"),
            BaselineError::Failed { reason, tail } => write!(f, "{reason}:\n{tail}"),
        }
    }
}

impl std::error::Error for BaselineError {}

/// The Python interpreter: the Python provider's setting, so both sides use the same one.
fn python() -> String {
    std::env::var("GLEITZEIT_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// Removes the temporary directory when dropped (also on an early return).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `python ARGS` in `dir` up to `limit`: its exit code (None: killed at the limit,
/// after a SIGTERM and `grace` to clean up) and its output (stdout and stderr together).
async fn run_python(
    dir: &Path,
    name: &str,
    args: &[String],
    limit: Duration,
    grace: Duration,
) -> Result<(Option<i32>, String), BaselineError> {
    let log = dir.join(format!("{name}.log"));
    // TMPDIR: the script's own temp dir (Redis's files) lands inside ours, named after gz.
    let mut proc = Launch::new(name, python(), &log)
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", dir)
        .spawn()
        .map_err(|e| BaselineError::NotInstalled(format!("Python is not available: {e}")))?;
    let status = proc.wait_exit_async(limit).await;
    if status.is_none() {
        proc.stop(grace).await;
    }
    let out = std::fs::read_to_string(proc.log()).unwrap_or_default();
    Ok((status.map(|s| s.code().unwrap_or(-1)), out))
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// The script's overall limit in seconds: generous floors (20 tasks/s, 250 ms per hop)
/// plus start-up, so only a stuck run reaches it.
fn script_timeout(tasks: usize, chain: usize) -> u64 {
    120 + (tasks / 20) as u64 + (chain / 4) as u64
}

/// Runs the Celery baseline with these sizes; its JSON figures.
pub(crate) async fn run_baseline(
    tasks: usize,
    chain: usize,
    workers: usize,
) -> Result<Value, BaselineError> {
    let dir = std::env::temp_dir().join(format!(
        "gz-bench-celery-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| BaselineError::Failed {
        reason: format!("cannot make {}: {e}", dir.display()),
        tail: String::new(),
    })?;
    let dir = TempDir(dir);
    let (code, _) = run_python(
        &dir.0,
        "celery-check",
        &["-c".to_string(), "import celery".to_string()],
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await?;
    if code != Some(0) {
        return Err(BaselineError::NotInstalled(format!(
            "Celery is not installed for {} (python3 -m pip install 'celery[redis]>=5,<6')",
            python()
        )));
    }
    let script = dir.0.join("celery_baseline.py");
    std::fs::write(&script, SCRIPT).map_err(|e| BaselineError::Failed {
        reason: format!("cannot write {}: {e}", script.display()),
        tail: String::new(),
    })?;
    let timeout = script_timeout(tasks, chain);
    let args = [
        script.display().to_string(),
        "--tasks".into(),
        tasks.to_string(),
        "--chain".into(),
        chain.to_string(),
        "--workers".into(),
        workers.max(1).to_string(),
        "--timeout".into(),
        timeout.to_string(),
        "--json".into(),
    ];
    // The script stops itself at `timeout`; the extra minute covers its start and clean-up.
    let (code, out) = run_python(
        &dir.0,
        "celery-baseline",
        &args,
        Duration::from_secs(timeout + 60),
        Duration::from_secs(20),
    )
    .await?;
    match code {
        Some(0) => out
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find(|v| v.get("celery_version").is_some())
            .ok_or_else(|| BaselineError::Failed {
                reason: "the Celery baseline printed no figures".into(),
                tail: tail(&out),
            }),
        Some(2) => Err(BaselineError::NotInstalled(tail(&out))),
        Some(c) => Err(BaselineError::Failed {
            reason: format!("the Celery baseline exited with {c}"),
            tail: tail(&out),
        }),
        None => Err(BaselineError::Failed {
            reason: format!(
                "the Celery baseline did not finish within {} s",
                timeout + 60
            ),
            tail: tail(&out),
        }),
    }
}

fn run_of<'a>(results: &'a [Value], name: &str) -> Option<&'a Value> {
    results.iter().find(|r| r["run"] == name)
}

fn positive(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x > 0.0)
}

/// Gleitzeit's figures for the comparison, two ways: as `gz bench` reports them (the
/// queue-manager's record, workflow created → finished) and from the submit to the
/// completion seen by `gz`, by the workflow's final event (like the Celery figures, which
/// run from the first submit to the last result collected).
struct Ours {
    tasks_per_s: Option<f64>,
    tasks_per_s_wall: Option<f64>,
    ms_per_hop: Option<f64>,
    ms_per_hop_wall: Option<f64>,
}

fn ours(results: &[Value]) -> Ours {
    let per = |r: Option<&Value>, f: fn(f64, f64) -> f64| {
        r.and_then(|r| {
            let n = r["tasks"].as_f64()?;
            let wall = r["wall_seconds"].as_f64()?;
            positive(Some(f(n, wall)))
        })
    };
    let through = run_of(results, "throughput").filter(|r| r["status"] == "completed");
    let chain = run_of(results, "chain").filter(|r| r["status"] == "completed");
    Ours {
        tasks_per_s: positive(through.and_then(|r| r["tasks_per_second"].as_f64())),
        tasks_per_s_wall: per(through, |n, s| n / s),
        ms_per_hop: positive(chain.and_then(|r| r["ms_per_task"].as_f64())),
        ms_per_hop_wall: per(chain, |n, s| s * 1000.0 / n),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    positive(Some(a? / b?))
}

/// The ratios: Gleitzeit throughput ÷ Celery throughput, Celery hop ÷ Gleitzeit hop (above
/// 1: Gleitzeit is faster), from `gz bench`'s figures and from the submit-to-result ones.
pub(crate) fn ratios(results: &[Value], celery: &Value) -> Value {
    let o = ours(results);
    let c_tps = positive(celery["throughput"]["tasks_per_s"].as_f64());
    let c_hop = positive(celery["chain"]["ms_per_hop"].as_f64());
    json!({
        "throughput": ratio(o.tasks_per_s, c_tps),
        "chain_hop": ratio(c_hop, o.ms_per_hop),
        "throughput_submit_to_result": ratio(o.tasks_per_s_wall, c_tps),
        "chain_hop_submit_to_result": ratio(c_hop, o.ms_per_hop_wall),
    })
}

fn fmt_opt(v: Option<f64>, digits: usize, unit: &str) -> String {
    v.map(|x| format!("{x:.digits$}{unit}"))
        .unwrap_or_else(|| "—".to_string())
}

/// The side-by-side lines.
pub(crate) fn print_side_by_side(results: &[Value], celery: &Value, ratios: &Value) {
    let o = ours(results);
    let c_tps = positive(celery["throughput"]["tasks_per_s"].as_f64());
    let c_hop = positive(celery["chain"]["ms_per_hop"].as_f64());
    println!(
        "side by side with Celery {} + Redis ({} prefork worker(s)), same machine, same session:",
        celery["celery_version"].as_str().unwrap_or("?"),
        celery["workers"]
    );
    println!(
        "  {:<12} {:>16} {:>16} {:>8}",
        "", "gleitzeit", "celery", "ratio"
    );
    println!(
        "  {:<12} {:>16} {:>16} {:>8}   (gleitzeit ÷ celery)",
        "throughput",
        fmt_opt(o.tasks_per_s, 0, " tasks/s"),
        fmt_opt(c_tps, 0, " tasks/s"),
        fmt_opt(ratios["throughput"].as_f64(), 1, "×"),
    );
    println!(
        "  {:<12} {:>16} {:>16} {:>8}   (celery ÷ gleitzeit)",
        "chain hop",
        fmt_opt(o.ms_per_hop, 2, " ms"),
        fmt_opt(c_hop, 2, " ms"),
        fmt_opt(ratios["chain_hop"].as_f64(), 1, "×"),
    );
    println!(
        "  timed like Celery (first submit to last result seen by gz): gleitzeit {}, {} per hop; ratios {} and {}",
        fmt_opt(o.tasks_per_s_wall, 0, " tasks/s"),
        fmt_opt(o.ms_per_hop_wall, 2, " ms"),
        fmt_opt(ratios["throughput_submit_to_result"].as_f64(), 1, "×"),
        fmt_opt(ratios["chain_hop_submit_to_result"].as_f64(), 1, "×"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_divide_the_right_way_round_and_skip_missing_figures() {
        let results = vec![
            json!({ "run": "throughput", "status": "completed", "tasks": 1000,
                    "tasks_per_second": 5000.0, "wall_seconds": 0.25, "ms_per_task": 0.2 }),
            json!({ "run": "chain", "status": "completed", "tasks": 100,
                    "tasks_per_second": 1000.0, "wall_seconds": 0.2, "ms_per_task": 1.0 }),
        ];
        let celery = json!({ "celery_version": "5.7.0", "workers": 2,
            "throughput": { "tasks": 1000, "seconds": 2.0, "tasks_per_s": 500.0 },
            "chain": { "length": 100, "seconds": 0.5, "ms_per_hop": 5.0 } });
        let r = ratios(&results, &celery);
        assert_eq!(r["throughput"].as_f64(), Some(10.0));
        assert_eq!(r["chain_hop"].as_f64(), Some(5.0));
        assert_eq!(r["throughput_submit_to_result"].as_f64(), Some(8.0));
        assert_eq!(r["chain_hop_submit_to_result"].as_f64(), Some(2.5));
        let r = ratios(
            &results[..1],
            &json!({ "throughput": { "tasks_per_s": 0.0 } }),
        );
        assert!(r["throughput"].is_null() && r["chain_hop"].is_null());
    }

    #[test]
    fn the_embedded_script_is_the_baseline() {
        assert!(SCRIPT.contains("def measure("));
        assert!(script_timeout(10_000, 200) > 500);
    }
}
