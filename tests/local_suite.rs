//! The commands that start a suite of their own through the shared launcher: `gz run` when
//! no hub answers (the README's first command), `gz start --detach` / `gz stop`, and
//! `gz bench`. Each runs `gz` as a process with a data dir of the test's own and no key in
//! its environment, as a user on a fresh machine would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gleitzeit_e2e::{bin, repo_root, temp_path, wait_for, Proc};
use gleitzeit_launcher::{redis::unused_port, Launch, Sig};

/// `gz ARGS` with `data_dir` as its data dir, logging to `data_dir/../<what>.log`.
fn gz(data_dir: &Path, what: &str, args: &[&str]) -> Proc {
    let log = data_dir.with_extension(format!("{what}.log"));
    Launch::new(format!("gz {what}"), bin("gz"), log)
        .args(args)
        .env("GLEITZEIT_DATA_DIR", data_dir)
        .env_remove("GLEITZEIT_API_KEY")
        .env_remove("GLEITZEIT_HUB_URL")
        .current_dir(repo_root())
        .spawn()
        .expect("gz starts")
}

/// Waits for `gz` to exit; its exit code and output (stdout and stderr together).
fn finish(mut gz: Proc, limit: Duration) -> (i32, String) {
    let status = gz.wait_exit(limit);
    let out = std::fs::read_to_string(gz.log()).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        gz.signal(Sig::Term);
        gz.wait_exit(Duration::from_secs(10));
        panic!("{} did not finish within {limit:?}:\n{out}", gz.name())
    });
    (status.code().unwrap_or(-1), out)
}

/// True when nothing listens on the port any more.
fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The one JSON document among `gz`'s output lines.
fn json_line(out: &str) -> serde_json::Value {
    out.lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON document in:\n{out}"))
}

/// Kills the pids a `gz start --detach` recorded, if the test did not stop them.
struct Recorded(PathBuf);

impl Recorded {
    fn pids(&self) -> Vec<u32> {
        let doc: serde_json::Value = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        doc["pids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["pid"].as_u64())
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

impl Drop for Recorded {
    fn drop(&mut self) {
        for pid in self.pids() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

#[tokio::test]
async fn gz_run_starts_a_local_suite_runs_the_workflow_and_stops_the_suite() {
    let data_dir = temp_path("local-run");
    let port = unused_port();
    let url = format!("http://127.0.0.1:{port}");
    let run = gz(
        &data_dir,
        "run",
        &["--hub-url", &url, "run", "examples/hello.yaml", "--json"],
    );
    let (code, out) = finish(run, Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("started a local gleitzeit suite"), "{out}");
    let doc = json_line(&out);
    assert_eq!(doc["status"], "completed", "{doc}");
    let report = doc["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == "report"))
        .unwrap_or_else(|| panic!("no report task: {doc}"));
    assert_eq!(report["result"]["result"], "sum is 6, label demo", "{doc}");
    // Every part logged to the data dir, and the suite is gone with the run.
    for name in ["central-hub", "queue-manager", "python-provider"] {
        assert!(
            data_dir.join("logs").join(format!("{name}.log")).is_file(),
            "no log of {name}"
        );
    }
    assert!(port_free(port), "the hub still listens after gz run");
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn gz_start_detached_survives_its_command_and_gz_stop_ends_every_part() {
    let data_dir = temp_path("local-start");
    let url = format!("http://127.0.0.1:{}", unused_port());
    let recorded = Recorded(data_dir.join("suite.json"));
    let start = gz(
        &data_dir,
        "start",
        &["--hub-url", &url, "start", "--detach"],
    );
    let (code, out) = finish(start, Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    let pids = recorded.pids();
    assert_eq!(pids.len(), 7, "the hub and six services: {out}");
    assert!(pids.iter().all(|p| alive(*p)), "a part died: {out}");

    // The detached suite answers: every service registers.
    wait_for(Duration::from_secs(30), || async {
        let status = gz(
            &data_dir,
            "status",
            &["--hub-url", &url, "status", "--json"],
        );
        let (code, out) = finish(status, Duration::from_secs(20));
        code == 0 && json_line(&out)["components"].as_array().map_or(0, Vec::len) >= 6
    })
    .await;

    let stop = gz(&data_dir, "stop", &["--hub-url", &url, "stop"]);
    let (code, out) = finish(stop, Duration::from_secs(30));
    assert_eq!(code, 0, "{out}");
    wait_for(Duration::from_secs(15), || async {
        pids.iter().all(|p| !alive(*p))
    })
    .await;
    assert!(!data_dir.join("suite.json").exists());
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn gz_bench_measures_on_private_suites_and_reports_json() {
    let data_dir = temp_path("local-bench");
    let bench = gz(
        &data_dir,
        "bench",
        &[
            "bench",
            "--tasks",
            "60",
            "--chain",
            "5",
            "--big",
            "300",
            "--width",
            "100",
            "--fan-out",
            "--llm-endpoints",
            "1",
            "--llm-slots",
            "2",
            "--llm-tasks",
            "6",
            "--llm-chain",
            "2",
            "--llm-latency-ms",
            "5",
            "--json",
        ],
    );
    let (code, out) = finish(bench, Duration::from_secs(180));
    assert_eq!(code, 0, "{out}");
    let doc = json_line(&out);
    let results = doc["results"].as_array().expect("results");
    let runs: Vec<&str> = results.iter().filter_map(|r| r["run"].as_str()).collect();
    assert_eq!(
        runs,
        ["throughput", "chain", "wide-deep-300-fanout", "llm"],
        "{doc}"
    );
    for r in &results[..3] {
        assert_eq!(r["status"], "completed", "{r}");
        assert!(r["tasks_per_second"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
        assert!(
            r["processes"]["queue-manager"]["peak_rss_mib"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0,
            "{r}"
        );
    }
    assert_eq!(results[0]["tasks"], 60);
    // A seed task and 3 fan-out layers of 100 members each: the members made at run time
    // are counted.
    assert_eq!(results[2]["tasks"], 1 + 3 * (1 + 100), "{}", results[2]);
    assert_eq!(results[3]["status"], "completed", "{}", results[3]);
    assert!(
        results[3]["achieved_tasks_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
