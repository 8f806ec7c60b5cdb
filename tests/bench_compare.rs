//! `gz bench --compare-celery` (issue 16): Gleitzeit's throughput and chain runs, then the
//! same workloads on Celery + Redis in the same session (`benches/celery_baseline.py`,
//! embedded in `gz`), with the ratios in the JSON document. Needs Celery 5 with Redis
//! support and `redis-server` (`tests/run.sh` installs both); runs `gz` as a process, as a
//! user would, and checks that nothing it started is left running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gleitzeit_e2e::{bin, repo_root, temp_path, Sig};
use gleitzeit_launcher::Launch;

/// Processes whose command line or working directory mentions `needle` (redis-server
/// rewrites its command line, but works in its `--dir`).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let mut text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            text.push_str(&format!(" (in {})", cwd.display()));
        }
        if text.contains(needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn gz_bench_compares_with_celery_in_the_same_session() {
    let data_dir = temp_path("bench-compare");
    let log = data_dir.with_extension("gz.log");
    let mut gz = Launch::new("gz bench --compare-celery", bin("gz"), &log)
        .args([
            "bench",
            "--tasks",
            "50",
            "--chain",
            "5",
            "--big",
            "0",
            "--llm-endpoints",
            "0",
            "--compare-celery",
            "--json",
        ])
        .env("GLEITZEIT_DATA_DIR", &data_dir)
        .env_remove("GLEITZEIT_API_KEY")
        .env_remove("GLEITZEIT_HUB_URL")
        .current_dir(repo_root())
        .spawn()
        .expect("gz starts");
    let pid = gz.pid();
    let limit = Duration::from_secs(300);
    let status = gz.wait_exit(limit);
    let out = std::fs::read_to_string(gz.log()).unwrap_or_default();
    let Some(status) = status else {
        // SIGTERM first: gz's own children, and the baseline script its Redis and worker.
        gz.signal(Sig::Term);
        gz.wait_exit(Duration::from_secs(30));
        panic!("gz bench --compare-celery did not finish within {limit:?}:\n{out}");
    };
    assert_eq!(status.code(), Some(0), "{out}");
    let doc: serde_json::Value = out
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON document in:\n{out}"));

    let runs: Vec<&str> = doc["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["run"].as_str())
        .collect();
    assert_eq!(runs, ["throughput", "chain"], "{doc}");
    let celery = &doc["celery"];
    assert!(
        celery.is_object(),
        "no Celery figures (is `celery[redis]` installed? tests/run.sh installs it): {}\n{out}",
        doc["celery_error"]
    );
    assert!(
        celery["celery_version"]
            .as_str()
            .unwrap_or("")
            .starts_with('5'),
        "{celery}"
    );
    assert_eq!(celery["throughput"]["tasks"], 50, "{celery}");
    assert_eq!(celery["chain"]["length"], 5, "{celery}");
    for figure in [
        &celery["throughput"]["tasks_per_s"],
        &celery["throughput"]["seconds"],
        &celery["chain"]["ms_per_hop"],
        &celery["chain"]["seconds"],
    ] {
        assert!(figure.as_f64().unwrap_or(0.0) > 0.0, "{celery}");
    }
    for ratio in [
        "throughput",
        "chain_hop",
        "throughput_submit_to_result",
        "chain_hop_submit_to_result",
    ] {
        assert!(
            doc["ratios"][ratio].as_f64().unwrap_or(0.0) > 0.0,
            "{ratio}: {}",
            doc["ratios"]
        );
    }
    assert!(doc["celery_error"].is_null(), "{doc}");

    // The baseline's files, Redis and worker lived under gz's temp dir for it: all gone.
    let ours = format!("gz-bench-celery-{pid}-");
    let left = processes_mentioning(&ours);
    assert!(left.is_empty(), "left running: {left:?}");
    let leftover_dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&ours))
        .collect();
    assert!(leftover_dirs.is_empty(), "left behind: {leftover_dirs:?}");
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = std::fs::remove_file(&log);
}
