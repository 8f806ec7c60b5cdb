//! Poison input end to end: numbers that would overflow a duration, records in the store that
//! cannot be loaded, and a workflow too large for one plan are each refused with a coded
//! error, while the suite stays up (across restarts too) and keeps running other work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gleitzeit_e2e::{task, workflow_file, SuiteOptions, TestSuite};
use gleitzeit_protocol::{events, Target};
use gleitzeit_store::{SqliteStore, Store, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus};
use serde_json::{json, Value};

const POISON_YAML: &str = r#"name: poison
timeout: 1e300
tasks:
  - id: a
    method: python/execute
    timeout: 1e19
    parameters: { code: "result = 1" }
"#;

const SMALL_YAML: &str = r#"name: small
tasks:
  - id: one
    method: python/execute
    parameters: { code: "result = 41 + 1" }
"#;

/// A normal workflow still runs to completion on this suite.
fn assert_suite_runs_work(suite: &TestSuite) {
    let (code, doc) = suite.run_json(&workflow_file("small.yaml", SMALL_YAML));
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(task(&doc, "one")["result"]["result"], 42);
}

/// Sends `workflow_submit` straight to a queue-manager, bypassing `gz validate`.
async fn raw_submit(suite: &TestSuite, spec: Value) -> Result<Value, gleitzeit_protocol::GzError> {
    let (client, _incoming) = suite.hub.client().await;
    let reply = client
        .request_with_timeout(
            Target::Type("queue-manager".into()),
            events::WORKFLOW_SUBMIT,
            json!({ "spec": spec }),
            Duration::from_secs(60),
        )
        .await;
    client.close().await;
    reply
}

/// Peak resident memory of a process in MiB (Linux `VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_numbers_get_coded_errors_from_validate_and_from_a_raw_submit() {
    let started = Instant::now();
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file("poison.yaml", POISON_YAML);

    let (code, out, err) = suite.gz(&["validate", &file.display().to_string()]);
    assert_eq!(code, 2, "{out}{err}");
    let text = format!("{out}{err}");
    assert!(text.contains("GZ7011 at 2:10"), "{text}");
    assert!(text.contains("GZ7011 at 6:14"), "{text}");

    for (what, spec) in [
        (
            "workflow timeout 1e300",
            json!({ "name": "p", "timeout": 1e300, "tasks": [{ "id": "a", "method": "python/execute", "parameters": { "code": "result = 1" } }] }),
        ),
        (
            "workflow timeout 1e19",
            json!({ "name": "p", "timeout": 1e19, "tasks": [{ "id": "a", "method": "python/execute", "parameters": { "code": "result = 1" } }] }),
        ),
        (
            "task timeout 1e19",
            json!({ "name": "p", "tasks": [{ "id": "a", "method": "python/execute", "timeout": 1e19, "parameters": { "code": "result = 1" } }] }),
        ),
        (
            "retry delay 1e300",
            json!({ "name": "p", "tasks": [{ "id": "a", "method": "python/execute", "retry": { "max_attempts": 3, "max_delay": 1e300, "base_delay": -1 }, "parameters": { "code": "result = 1" } }] }),
        ),
    ] {
        let err = raw_submit(&suite, spec).await.expect_err(what);
        assert_eq!(err.code, "GZ7011", "{what}: {err:?}");
    }
    let qm = &mut suite.services[0];
    assert!(
        qm.running(),
        "the queue-manager survived the poison submissions"
    );
    assert_suite_runs_work(&suite);
    eprintln!("poison numbers: {:?}", started.elapsed());
}

fn record(id: &str, spec: Value) -> (WorkflowRecord, Vec<TaskRecord>) {
    let wf = WorkflowRecord {
        id: id.into(),
        name: id.into(),
        status: WorkflowStatus::Running,
        spec: gleitzeit_store::JsonText::of(&spec).expect("a spec"),
        base_dir: None,
        total_tasks: 1,
        created_at: 1_700_000_000_000,
        started_at: Some(1_700_000_000_000),
        finished_at: None,
        error: None,
        owner: Some("admin".into()),
    };
    let task = TaskRecord {
        workflow_id: id.into(),
        task_id: "a".into(),
        name: "a".into(),
        method: "python/execute".into(),
        status: TaskStatus::Running,
        priority: 2,
        attempts: 1,
        params: gleitzeit_protocol::records::JsonText::of(&json!({ "code": "result = 1" })).ok(),
        result: None,
        error: None,
        provider_id: None,
        queued_at: None,
        started_at: Some(1_700_000_000_000),
        finished_at: None,
    };
    (wf, vec![task])
}

/// `gz list --json`: status and error code of each workflow by id.
fn listed(suite: &TestSuite) -> Vec<(String, String, String)> {
    let (code, out, err) = suite.gz(&["list", "--limit", "100", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("json");
    doc.as_array()
        .expect("a list")
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap_or_default().to_string(),
                w["status"].as_str().unwrap_or_default().to_string(),
                w["error"]["code"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_in_the_store_is_marked_failed_and_the_suite_survives_restarts() {
    let started = Instant::now();
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    suite.kill_services();
    {
        let store = SqliteStore::open(&suite.data_dir.join("gleitzeit.db")).expect("store");
        let poison_spec = json!({ "name": "p", "timeout": 1e300,
            "tasks": [{ "id": "a", "method": "python/execute", "parameters": { "code": "result = 1" } }] });
        for (id, spec) in [
            ("wf-poison-timeout", poison_spec.clone()),
            ("wf-poison-shape", json!({ "name": 5, "tasks": "none" })),
            ("wf-poison-json", poison_spec),
        ] {
            let (wf, tasks) = record(id, spec);
            store.create_workflow(&wf, &tasks).expect("stored");
        }
    }
    {
        let db = rusqlite::Connection::open(suite.data_dir.join("gleitzeit.db")).expect("db");
        db.execute(
            "UPDATE workflow_specs SET spec = '{\"name\": [' WHERE workflow_id = 'wf-poison-json'",
            [],
        )
        .expect("corrupt the spec");
    }
    for round in 0..2 {
        suite.start_services(&SuiteOptions::default()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            suite.services[0].running(),
            "round {round}: the queue-manager stays up with poison in its store"
        );
        assert_suite_runs_work(&suite);
        let list = listed(&suite);
        for id in ["wf-poison-timeout", "wf-poison-shape", "wf-poison-json"] {
            let found = list.iter().find(|(w, _, _)| w == id);
            assert_eq!(
                found.map(|(_, s, c)| (s.as_str(), c.as_str())),
                Some(("failed", "GZ5002")),
                "round {round}: {id} in {list:?}"
            );
        }
        suite.kill_services();
    }
    eprintln!("poison in the store: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300001_task_workflow_is_refused_with_gz7012_within_bounded_memory() {
    let started = Instant::now();
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let tasks: Vec<Value> = (0..300_001)
        .map(|i| json!({ "id": format!("t{i}"), "method": "python/execute", "parameters": { "code": "result = 1" } }))
        .collect();
    let err = raw_submit(&suite, json!({ "name": "huge", "tasks": tasks }))
        .await
        .expect_err("refused");
    assert_eq!(err.code, "GZ7012", "{err:?}");
    assert!(err.message.contains("300001 tasks"), "{}", err.message);
    let qm = &mut suite.services[0];
    assert!(qm.running());
    let peak = peak_rss_mib(qm.pid());
    assert!(peak < 768, "queue-manager peak RSS {peak} MiB");
    assert_suite_runs_work(&suite);
    eprintln!(
        "300,001 tasks refused: {:?}, queue-manager peak {peak} MiB",
        started.elapsed()
    );
}
