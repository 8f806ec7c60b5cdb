//! The monitoring commands against the real services: `gz health` exit codes, `gz events`
//! (kept, filtered, followed), `gz watch task` and `gz watch queue`, `gz inspect node`, and
//! the error catalogue (`gz errors list|search|show`, no hub needed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gleitzeit_e2e::{gz_at, workflow_file, Sig, SuiteOptions, TestSuite};
use serde_json::Value;

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_health_says_healthy_degraded_or_down_by_its_exit_code() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (code, out, err) = suite.gz(&["health", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["status"], "healthy", "{doc:#}");
    let (code, out, _) = suite.gz(&["health", "--quiet"]);
    assert_eq!((code, out.as_str()), (0, ""));

    // A frozen engine turns unhealthy after the hub's heartbeat timeout: no workflow can run.
    // The suite starts the queue-manager, resolver, engine and provider in this order.
    let engine = 2;
    suite.services[engine].signal(Sig::Stop);
    let mut verdict = 0;
    for _ in 0..100 {
        let (code, _, _) = suite.gz(&["health", "--quiet"]);
        verdict = code;
        if code == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    suite.services[engine].signal(Sig::Cont);
    assert_eq!(verdict, 2, "a stopped engine is down");

    // No hub at all.
    let (code, out, _) = gz_at("http://127.0.0.1:9", &["health", "--json"]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["status"],
        "down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_events_shows_kept_and_followed_events_filtered_by_type() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "two.yaml",
        "name: two\ntasks:\n  - id: a\n    method: python/execute\n    parameters: { code: \"result = 1\" }\n  - id: b\n    method: python/execute\n    parameters: { code: \"result = context['x'] + 1\", context: { x: \"${a.result}\" } }\n",
    );
    let id = suite.submit(&file);
    suite
        .wait_finished(&id, std::time::Duration::from_secs(30))
        .await;

    let (code, out, err) = suite.gz(&["events", "--workflow", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let all = json_lines(&out);
    let names: Vec<&str> = all.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names.first(), Some(&"workflow_submitted"), "{names:?}");
    assert_eq!(names.last(), Some(&"workflow_completed"), "{names:?}");
    let seqs: Vec<u64> = all
        .iter()
        .filter_map(|e| e["payload"]["seq"].as_u64())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");

    let (_, out, _) = suite.gz(&[
        "events",
        "--workflow",
        &id,
        "--types",
        "task_completed",
        "--json",
    ]);
    let done = json_lines(&out);
    assert_eq!(done.len(), 2, "{out}");
    assert!(done.iter().all(|e| e["event"] == "task_completed"));

    // Following a finished workflow returns at once; recent events include it.
    let (code, _, _) = suite.gz(&["events", "--workflow", &id, "--follow"]);
    assert_eq!(code, 0);
    let (code, out, _) = suite.gz(&["events", "--types", "workflow_completed"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id), "{out}");
    let (code, _, err) = suite.gz(&["events", "--types", "no_such_event"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_watch_task_follows_one_task_and_watch_queue_counts_the_waiting_work() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "slow.yaml",
        "name: slow\ntasks:\n  - id: nap\n    method: python/execute\n    parameters: { code: \"import time; time.sleep(1.5); result = 'rested'\" }\n  - id: boom\n    method: python/execute\n    dependencies: [nap]\n    parameters: { code: \"raise ValueError('no')\" }\n",
    );
    let id = suite.submit(&file);
    let (code, out, err) = suite.gz(&["watch", "queue", "--once", "--json"]);
    assert_eq!(code, 0, "{err}");
    let snap: Value = serde_json::from_str(out.trim()).expect("json");
    assert!(snap["workflows"].as_u64().is_some(), "{snap:#}");

    let (code, out, err) = suite.gz(&["watch", "task", "nap", "--workflow", &id, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let last = json_lines(&out).pop().expect("a task record");
    assert_eq!(last["status"], "completed");
    assert_eq!(last["result"]["result"], "rested");

    let (code, out, _) = suite.gz(&["watch", "task", "boom", "--workflow", &id, "--json"]);
    assert_eq!(code, 1, "a failed task exits 1: {out}");
    assert_eq!(
        json_lines(&out).pop().expect("record")["error"]["code"],
        "GZ2025"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_inspect_node_shows_one_component_by_id_or_prefix() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let components = suite.hub.components().await;
    let python = components
        .iter()
        .find(|c| c["component_type"] == "python-provider")
        .and_then(|c| c["component_id"].as_str())
        .expect("python-provider")
        .to_string();
    let (code, out, err) = suite.gz(&["inspect", "node", &python, "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["component"]["component_id"], python.as_str());
    assert!(doc["methods"]
        .as_array()
        .is_some_and(|m| m.iter().any(|x| x == "python/execute")));
    assert!(doc["functions"].as_array().is_some_and(|f| f.len() >= 10));
    let (code, out, _) = suite.gz(&["inspect", "node", &python[..python.len() - 3]]);
    assert_eq!(code, 0);
    assert!(out.contains("python/execute"), "{out}");
    let (code, _, err) = suite.gz(&["inspect", "node", "nobody-here"]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn the_error_catalogue_is_listed_searched_and_shown_without_a_hub() {
    let (code, out, _) = gz_at(
        "http://127.0.0.1:9",
        &["errors", "list", "--domain", "auth", "--json"],
    );
    assert_eq!(code, 0);
    let list: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|e| e["domain"] == "auth"
                && e["code"].as_str().is_some_and(|c| c.starts_with("GZ4")))
    );
    let (code, out, _) = gz_at("http://127.0.0.1:9", &["errors", "search", "redis"]);
    assert_eq!(code, 0);
    assert!(out.contains("GZ1001"), "{out}");
    let (code, out, _) = gz_at(
        "http://127.0.0.1:9",
        &["errors", "show", "GZ2011", "--json"],
    );
    assert_eq!(code, 0);
    let e: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(e["severity"], "medium");
    assert!(e["hint"]
        .as_str()
        .is_some_and(|h| h.contains("ollama pull")));
    let (code, _, _) = gz_at("http://127.0.0.1:9", &["errors", "show", "GZ0000"]);
    assert_eq!(code, 2);
    let (code, out, _) = gz_at(
        "http://127.0.0.1:9",
        &["errors", "list", "--severity", "critical"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("GZ5001"), "{out}");
}

#[test]
fn gz_ends_quietly_when_the_reader_of_its_output_goes_away() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    // `gz validate --explain big.yaml | head -c 100`: about 800 KB of output, far more than
    // a pipe holds, and the reader closes the pipe after 100 bytes.
    let dir = gleitzeit_e2e::temp_path("pipe");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut yaml = String::from("name: big\ntasks:\n");
    for i in 0..3000 {
        yaml.push_str(&format!(
            "  - id: t{i}\n    method: python/execute\n    parameters: {{code: 'result = {i}'}}\n"
        ));
    }
    let file = dir.join("big.yaml");
    std::fs::write(&file, yaml).expect("write the workflow");
    let mut child = Command::new(gleitzeit_e2e::bin("gz"))
        .args(["validate", "--explain"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gz starts");
    let mut first = [0u8; 100];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("the first 100 bytes");
    // stdout is dropped here: gz's next write meets a closed pipe
    let out = child.wait_with_output().expect("gz ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_stats_and_gz_monitor_report_what_ran() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "mixed.yaml",
        "name: mixed\ntasks:\n  - id: ok\n    method: python/execute\n    parameters: { code: \"result = 1\" }\n  - id: bad\n    method: python/execute\n    parameters: { code: \"raise ValueError('x')\" }\n",
    );
    let (code, _) = suite.run_json(&file);
    assert_eq!(code, 1);
    let (code, out, err) = suite.gz(&["stats", "--range", "10m", "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["workflows"], 1, "{doc:#}");
    assert_eq!(doc["workflows_by_status"]["failed"], 1);
    assert_eq!(doc["tasks_completed"], 1);
    assert_eq!(doc["tasks_failed"], 1);
    assert_eq!(doc["task_success_rate"], 0.5);
    let (code, out, _) = suite.gz(&["stats", "--format", "csv"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("metric,value\n"), "{out}");
    assert!(out.contains("tasks_failed,1"), "{out}");
    let (code, _, _) = suite.gz(&["stats", "--range", "forever"]);
    assert_eq!(code, 2);

    let (code, out, err) = suite.gz(&["monitor", "--once", "--json"]);
    assert_eq!(code, 0, "{err}");
    let snap: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        snap["components"].as_array().map(Vec::len),
        Some(4),
        "{snap:#}"
    );
    assert_eq!(snap["workflows"][0]["status"], "failed");
    let (code, out, _) = suite.gz(&["monitor", "--once"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("execution-engine") && out.contains("TASKS/S"),
        "{out}"
    );
}

#[test]
fn gz_logs_reads_filters_and_formats_the_local_suites_logs() {
    let dir = gleitzeit_e2e::temp_path("logs");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("dir");
    std::fs::write(
        logs.join("queue-manager.log"),
        "2026-12-03T09:46:33.807978Z  INFO queue_manager: store opened kind=sqlite\n2026-12-03T09:46:34.000000Z  WARN queue_manager::machine: lease expired task=t1\n",
    )
    .expect("write");
    std::fs::write(
        logs.join("python-provider.log"),
        "{\"timestamp\":\"2026-12-03T09:46:35Z\",\"level\":\"ERROR\",\"target\":\"python_provider\",\"message\":\"worker died\",\"pid\":7}\n",
    )
    .expect("write");
    let dd = dir.display().to_string();
    let (code, out, _) = gz_at("http://127.0.0.1:9", &["logs", "--data-dir", &dd, "--json"]);
    assert_eq!(code, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    let (_, out, _) = gz_at(
        "http://127.0.0.1:9",
        &["logs", "--data-dir", &dd, "--level", "warn", "--json"],
    );
    let levels: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| l["level"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(levels, ["ERROR", "WARN"], "{out}");
    let (_, out, _) = gz_at(
        "http://127.0.0.1:9",
        &[
            "logs",
            "--data-dir",
            &dd,
            "--service",
            "queue-manager",
            "--search",
            "LEASE",
        ],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("lease expired task=t1"), "{out}");
    let (code, _, err) = gz_at(
        "http://127.0.0.1:9",
        &["logs", "--data-dir", &dd, "--service", "nobody"],
    );
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_logs_carry_the_event_and_correlation_id_they_handle() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "one.yaml",
        "name: one\ntasks:\n  - id: a\n    method: python/execute\n    parameters: { code: \"result = 1\" }\n",
    );
    let id = suite.submit(&file);
    suite
        .wait_finished(&id, std::time::Duration::from_secs(30))
        .await;
    // The queue-manager (started first) logged the submission inside the envelope's span.
    let log = std::fs::read_to_string(suite.services[0].log()).expect("log");
    let line = log
        .lines()
        .find(|l| l.contains("workflow submitted") && l.contains(&id))
        .unwrap_or_else(|| panic!("no submission logged:\n{log}"));
    assert!(
        line.contains("envelope{event=workflow_submit correlation_id="),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_alerts_tell_of_a_lost_component_and_of_tasks_nobody_serves() {
    let mut suite = TestSuite::start(SuiteOptions {
        provider_grace: 4.0,
        ..SuiteOptions::default()
    })
    .await;
    let (client, mut incoming) = suite.hub.client().await;
    client
        .subscribe(&["components".to_string()])
        .await
        .expect("subscribe");
    // Tasks of a method nobody serves: an alert at half the grace, before they fail.
    let file = workflow_file(
        "open.yaml",
        "name: open\ntasks:\n  - id: shout\n    method: text/shout\n    parameters: { words: [a] }\n",
    );
    let id = suite.submit(&file);
    let alert = next_alert(&mut incoming).await;
    assert_eq!(alert["kind"], "queue_backlog", "{alert:#}");
    assert_eq!(alert["details"]["method"], "text/shout");
    assert_eq!(alert["severity"], "warning");
    suite
        .wait_finished(&id, std::time::Duration::from_secs(30))
        .await;

    // A provider killed without a goodbye.
    suite.services[3].kill();
    let alert = next_alert(&mut incoming).await;
    assert_eq!(alert["kind"], "component_lost", "{alert:#}");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["component_type"], "python-provider");
    client.close().await;
}

/// The next `system_alert` payload (within 15 s).
async fn next_alert(incoming: &mut gleitzeit_hub_client::Incoming) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let env = tokio::time::timeout_at(deadline, incoming.recv())
            .await
            .expect("an alert in time")
            .expect("connected");
        if env.event == "system_alert" {
            return env.payload;
        }
    }
}
