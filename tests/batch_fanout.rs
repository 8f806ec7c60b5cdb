//! Fan-out over an earlier task's result, end to end against the real binaries: a task with
//! `batch: {from: "${list.result}"}` becomes one task per item at run time, a later task
//! gets every result (or, with `tolerate_failures`, every outcome), LLM tasks fan out over
//! a list the simulator's endpoint answers, and the fan-out survives a SIGKILLed
//! queue-manager (SQLite and Redis) and a SIGKILLed resolver with exactly one recorded
//! result per item.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use gleitzeit_e2e::{
    executions, task, temp_path, wait_for, workflow_file, RedisServer, SuiteOptions, TestSuite,
};
use serde_json::Value;

/// `list` returns `n` numbers; `each` doubles one (sleeping `sleep` s, appending its item
/// to `log`); `total` sums the doubled list; `report` (tolerant) counts the outcomes.
fn fan_yaml(n: usize, sleep: f64, log: &Path, fail_on: Option<usize>) -> String {
    let fail = fail_on
        .map(|k| format!("if context['n'] == {k}:\\n    raise ValueError('bad item')\\n"))
        .unwrap_or_default();
    format!(
        r#"name: fan-out
tasks:
  - id: list
    method: python/execute
    parameters: {{ code: "result = list(range({n}))" }}
  - id: each
    method: python/execute
    batch: {{ from: "${{list.result}}", max_items: 5000 }}
    parameters:
      code: "import time\ntime.sleep({sleep})\nopen('{log}', 'a').write(str(context['i']) + '\\n')\n{fail}result = context['n'] * 2"
      context: {{ n: "${{item}}", i: "${{item_index}}" }}
  - id: total
    method: python/execute
    parameters: {{ code: "result = sum(context['all'])", context: {{ all: "${{each.result}}" }} }}
  - id: report
    method: python/execute
    tolerate_failures: true
    dependencies: [each]
    parameters: {{ code: "result = [o['status'] for o in context['o']].count('completed')", context: {{ o: "${{each.results}}" }} }}
"#,
        log = log.display()
    )
}

/// A fresh file the items append to (not in the suite's data dir: with Redis the
/// queue-manager makes none).
fn log_path(what: &str) -> std::path::PathBuf {
    let dir = temp_path("fan-log");
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join(format!("{what}.log"))
}

/// Checks a finished fan-out of `n` items: every item's task completed once recorded, the
/// join and the sum.
fn assert_fanned_out(doc: &Value, n: usize, log: &Path) {
    assert_eq!(
        doc["workflow"]["status"], "completed",
        "{:#}",
        doc["workflow"]
    );
    let tasks = doc["tasks"].as_array().expect("tasks");
    assert_eq!(
        tasks.len(),
        n + 4,
        "list, template, total, report and {n} items"
    );
    assert_eq!(doc["workflow"]["total_tasks"], n + 4);
    let members: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["task_id"].as_str().unwrap_or("").starts_with("each-"))
        .collect();
    assert_eq!(members.len(), n);
    assert!(members
        .iter()
        .all(|t| t["status"] == "completed" && !t["result"].is_null()));
    let sum: u64 = (0..n as u64).map(|k| k * 2).sum();
    assert_eq!(task(doc, "total")["result"]["result"], sum);
    assert_eq!(task(doc, "report")["result"]["result"], n);
    let joined = &task(doc, "each")["result"];
    assert_eq!(joined["completed"], n);
    assert_eq!(joined["result"][n - 1], (n as u64 - 1) * 2);
    let runs = executions(log);
    assert_eq!(runs.len(), n, "every item ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_fans_out_over_a_list_and_a_later_task_gets_every_result() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let log = log_path("plain");
    let file = workflow_file("fan.yaml", &fan_yaml(40, 0.0, &log, None));
    let (code, out, err) = suite.gz(&["validate", &file.display().to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let id = doc["workflow_id"].as_str().unwrap().to_string();
    let (code, out, err) = suite.gz(&["inspect", "workflow", &id, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_fanned_out(&doc, 40, &log);
    assert_eq!(task(&doc, "each-00007")["name"], "each [6]");

    // The README's example.
    let example = gleitzeit_e2e::repo_root().join("examples/fan_out_over_results.yaml");
    let (code, doc) = suite.run_json(&example);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["total_tasks"], 12, "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_item_fails_the_join_and_the_tolerant_task_counts_the_rest() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let log = log_path("failing");
    let file = workflow_file("fan-fail.yaml", &fan_yaml(10, 0.0, &log, Some(3)));
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    let id = doc["workflow_id"].as_str().unwrap().to_string();
    let (_, out, _) = suite.gz(&["inspect", "workflow", &id, "--json"]);
    let doc: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(task(&doc, "each-00004")["status"], "failed");
    let each = task(&doc, "each");
    assert_eq!(each["status"], "failed");
    assert_eq!(each["error"]["code"], "GZ2001");
    assert_eq!(task(&doc, "total")["status"], "skipped");
    assert_eq!(task(&doc, "report")["result"]["result"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_tasks_fan_out_over_a_list_and_one_more_gets_every_answer() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (_sim, _provider) = suite
        .with_llm_sim(&["--latency-ms", "1", "--max-concurrent", "8"], 8)
        .await;
    let yaml = r#"name: topics
tasks:
  - id: topics
    method: python/execute
    parameters: { code: "result = ['rivers', 'mountains', 'deserts', 'forests', 'glaciers']" }
  - id: describe
    method: llm/chat
    batch: { from: "${topics.result}" }
    parameters:
      model: llama3.2
      messages: [{ role: user, content: "Describe ${item} in one sentence (topic ${item_index})" }]
  - id: combine
    method: llm/chat
    parameters:
      model: llama3.2
      messages: [{ role: user, content: "Combine: ${describe.result}" }]
"#;
    let (code, doc) = suite.run_json(&workflow_file("topics.yaml", yaml));
    assert_eq!(code, 0, "{doc:#}");
    let id = doc["workflow_id"].as_str().unwrap().to_string();
    let (_, out, _) = suite.gz(&["inspect", "workflow", &id, "--json"]);
    let doc: Value = serde_json::from_str(&out).expect("json");
    let answers = task(&doc, "describe")["result"]["result"]
        .as_array()
        .cloned()
        .expect("joined answers");
    assert_eq!(answers.len(), 5);
    assert!(answers
        .iter()
        .all(|a| a.as_str().is_some_and(|s| !s.is_empty())));
    assert_eq!(task(&doc, "combine")["status"], "completed");
}

/// Submits a 300-item fan-out, SIGKILLs the queue-manager once items are running and
/// starts another; every item completes with one recorded result.
async fn fan_out_survives_a_killed_queue_manager(opts: SuiteOptions) {
    let mut suite = TestSuite::start(opts.clone()).await;
    let log = log_path("qm-kill");
    let id = suite.submit(&workflow_file(
        "fan-kill.yaml",
        &fan_yaml(300, 0.01, &log, None),
    ));
    wait_for(Duration::from_secs(60), || async {
        executions(&log).len() >= 40
    })
    .await;
    suite.services[0].kill();
    eprintln!(
        "items run when the queue-manager was killed: {}",
        executions(&log).len()
    );
    let mut qm_args = vec![
        "--data-dir".to_string(),
        suite.data_dir.display().to_string(),
    ];
    if let Some(url) = &opts.redis_url {
        qm_args.extend(["--redis-url".to_string(), url.clone()]);
    }
    let args: Vec<&str> = qm_args.iter().map(String::as_str).collect();
    let _qm = suite.hub.service("queue-manager", "qm-2", &args);
    suite.hub.wait_registered(&["qm-2"]).await;
    let doc = suite.wait_finished(&id, Duration::from_secs(120)).await;
    assert_fanned_out(&doc, 300, &log);
    let repeated = executions(&log).values().filter(|n| **n > 1).count();
    eprintln!("items run twice (in flight at the kill): {repeated}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_survives_a_killed_queue_manager_with_the_embedded_store() {
    fan_out_survives_a_killed_queue_manager(SuiteOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_survives_a_killed_queue_manager_with_redis() {
    let redis = RedisServer::start().await;
    fan_out_survives_a_killed_queue_manager(SuiteOptions {
        redis_url: Some(redis.url.clone()),
        ..SuiteOptions::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_resolver_derives_the_same_items_and_the_fan_out_completes() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let log = log_path("dr-kill");
    let id = suite.submit(&workflow_file(
        "fan-dr.yaml",
        &fan_yaml(120, 0.02, &log, None),
    ));
    wait_for(Duration::from_secs(60), || async {
        executions(&log).len() >= 20
    })
    .await;
    suite.services[1].kill();
    let _dr = suite.hub.service("dependency-resolver", "dr-2", &[]);
    suite.hub.wait_registered(&["dr-2"]).await;
    let doc = suite.wait_finished(&id, Duration::from_secs(90)).await;
    assert_fanned_out(&doc, 120, &log);
}
