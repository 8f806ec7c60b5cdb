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
