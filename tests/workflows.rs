//! Workflows end to end through the real services as processes: examples, substitution,
//! failures, timeouts, retries, cancellation, priorities, persistence across restarts, lost
//! services and leases; and the in-process suite's own life cycle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gleitzeit_e2e::{
    assert_all_completed_once_recorded, chains_yaml, executions, repo_root, submit_at, task,
    wait_finished_at, wait_for, workflow_file, InProcessSuite, Sig, SuiteOptions, TestHub,
    TestSuite,
};
use serde_json::json;

fn example(name: &str) -> std::path::PathBuf {
    repo_root().join("examples").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_example_passes_typed_results_along() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (code, doc) = suite.run_json(&example("hello.yaml"));
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["status"], "completed");
    assert_eq!(
        task(&doc, "total")["result"]["result"],
        json!({"sum": 6, "first": 3})
    );
    assert_eq!(
        task(&doc, "report")["result"]["result"],
        "sum is 6, label demo"
    );
    assert!(task(&doc, "report")["result"]["output"]
        .as_str()
        .unwrap()
        .contains("computing the report"));
}

/// The hub's count of envelopes it accepted for `event` (`gleitzeit_hub_messages_total`).
async fn hub_messages(suite: &TestSuite, event: &str) -> u64 {
    let text = suite.metrics_text().await;
    let line = format!("gleitzeit_hub_messages_total{{event=\"{event}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_of_megabytes_is_submitted_and_planned_in_parts() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    // ~2.5 MB of spec: 600 tasks with 4 KB of text each (multi-byte characters too), the
    // last reading the first's result.
    let pad = "ä€x".repeat(700);
    let mut yaml = String::from("name: big-spec\ntasks:\n");
    for i in 0..600 {
        yaml.push_str(&format!(
            "  - id: t{i}\n    method: python/execute\n    parameters: {{ code: \"result = len(context['pad'])\", context: {{ pad: \"{pad}\" }} }}\n"
        ));
    }
    yaml.push_str(
        "  - id: last\n    method: python/execute\n    parameters: { code: \"result = context['n'] + 1\", context: { n: \"${t0.result}\" } }\n",
    );
    let file = workflow_file("big-spec.yaml", &yaml);
    let (submits, plans) = (
        hub_messages(&suite, "workflow_submit").await,
        hub_messages(&suite, "workflow_plan").await,
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{}", doc["status"]);
    assert_eq!(doc["status"], "completed");
    assert_eq!(task(&doc, "t0")["result"]["result"], json!(2100));
    assert_eq!(task(&doc, "last")["result"]["result"], json!(2101));
    // One submission and one plan, each relayed in parts of at most 1 MiB.
    let submit_parts = hub_messages(&suite, "workflow_submit").await - submits;
    let plan_parts = hub_messages(&suite, "workflow_plan").await - plans;
    assert!(submit_parts >= 3, "{submit_parts} parts");
    assert!(plan_parts >= 3, "{plan_parts} parts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_and_fan_in_and_object_substitution() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (code, doc) = suite.run_json(&example("fan_out_fan_in.yaml"));
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(
        task(&doc, "combine")["result"]["result"],
        json!({"parts": [1, 4, 9, 16], "total": 30})
    );

    let file = workflow_file(
        "objects.yaml",
        r#"
name: objects
tasks:
  - id: make
    method: python/execute
    parameters: { code: "result = {'user': {'name': 'ada', 'langs': ['en', 'fr']}, 'n': 2.5}" }
  - id: use
    method: python/execute
    parameters:
      context:
        user: "${make.result.user}"
        second_lang: "${make.result.user.langs.1}"
        n: "${make.result.n}"
        text: "user=${make.result.user}"
      code: "result = context"
"#,
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let ctx = &task(&doc, "use")["result"]["result"];
    assert_eq!(ctx["user"], json!({"name": "ada", "langs": ["en", "fr"]}));
    assert_eq!(ctx["second_lang"], "fr");
    assert_eq!(ctx["n"], 2.5);
    assert_eq!(ctx["text"], r#"user={"langs":["en","fr"],"name":"ada"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_skips_its_dependents_while_an_independent_branch_completes() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (code, doc) = suite.run_json(&example("failure.yaml"));
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(doc["status"], "failed");
    let broken = task(&doc, "broken");
    assert_eq!(broken["status"], "failed");
    assert_eq!(broken["error"]["code"], "GZ2025");
    assert!(
        broken["error"]["details"]["traceback"]
            .as_str()
            .unwrap()
            .contains("ValueError"),
        "{broken}"
    );
    assert_eq!(task(&doc, "after_broken")["status"], "skipped");
    assert_eq!(task(&doc, "after_broken")["error"]["code"], "GZ3004");
    assert_eq!(task(&doc, "independent")["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_sleeping_script() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let marker = std::env::temp_dir().join(format!("gz-sleeper-{}", std::process::id()));
    let file = workflow_file(
        "sleep.yaml",
        &format!(
            r#"
name: sleeper
tasks:
  - id: sleepy
    method: python/execute
    timeout: 1
    parameters:
      code: "import os, time\nopen('{marker}', 'w').write(str(os.getpid()))\ntime.sleep(30)"
"#,
            marker = marker.display()
        ),
    );
    let started = Instant::now();
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(task(&doc, "sleepy")["error"]["code"], "GZ2002");
    let pid = std::fs::read_to_string(&marker).expect("script started");
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the sleeping worker still runs"
    );
    let _ = std::fs::remove_file(marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_succeeds_on_the_second_attempt() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let dir = workflow_file("unused", "").parent().unwrap().to_path_buf();
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::copy(example("retry.yaml"), dir.join("retry.yaml")).unwrap();
    std::fs::copy(example("scripts/flaky.py"), dir.join("scripts/flaky.py")).unwrap();
    let (code, doc) = suite.run_json(&dir.join("retry.yaml"));
    assert_eq!(code, 0, "{doc:#}");
    let flaky = task(&doc, "flaky");
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(
        flaky["result"]["result"],
        json!({"succeeded_on_attempt": 2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_is_rejected_before_anything_runs() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "cycle.yaml",
        "name: cycle\ntasks:\n  - { id: a, method: python/execute, dependencies: [c], parameters: { code: 'result=1' } }\n  - { id: b, method: python/execute, dependencies: [a], parameters: { code: 'result=1' } }\n  - { id: c, method: python/execute, dependencies: [b], parameters: { code: 'result=1' } }\n",
    );
    let (code, out, err) = suite.gz(&["run", &file.display().to_string()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(format!("{out}{err}").contains("GZ3003"), "{out}{err}");
    assert!(
        format!("{out}{err}").contains("->"),
        "cycle path missing: {out}{err}"
    );
    let (_, list, _) = suite.gz(&["list", "--json"]);
    assert!(!list.contains("cycle"), "a workflow was submitted: {list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_error_is_reported_with_line_and_column() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file("broken.yaml", "name: broken\ntasks:\n  - id: a\n    method: python/execute\n    parameters: { code: 'x'\n");
    let (code, out, err) = suite.gz(&["validate", &file.display().to_string()]);
    assert_eq!(code, 2);
    let text = format!("{out}{err}");
    assert!(text.contains("GZ7010"), "{text}");
    assert!(
        text.contains(" at ") && text.contains(':'),
        "no line:column in {text}"
    );
    let (code, out, _) = suite.gz(&["validate", &file.display().to_string(), "--json"]);
    assert_eq!(code, 2);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(
        doc["diagnostics"][0]["line"].as_u64().unwrap() >= 5,
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_workflow_stops_its_python_work() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let marker = std::env::temp_dir().join(format!("gz-cancel-{}", std::process::id()));
    let file = workflow_file(
        "long.yaml",
        &format!(
            "name: long\ntasks:\n  - id: long\n    method: python/execute\n    parameters:\n      code: \"import os, time\\nopen('{}', 'w').write(str(os.getpid()))\\ntime.sleep(60)\"\n",
            marker.display()
        ),
    );
    let (code, out, err) = suite.gz(&["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(Duration::from_secs(20), || async { marker.exists() }).await;
    let pid = std::fs::read_to_string(&marker).unwrap();
    let (code, out, err) = suite.gz(&["cancel", &id]);
    assert_eq!(code, 0, "{out}{err}");
    let proc_path = format!("/proc/{}", pid.trim());
    wait_for(Duration::from_secs(10), || async {
        !std::path::Path::new(&proc_path).exists()
    })
    .await;
    let (_, out, _) = suite.gz(&["inspect", "workflow", &id, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("inspect json");
    assert_eq!(doc["workflow"]["status"], "cancelled", "{doc:#}");
    let _ = std::fs::remove_file(marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_are_observed_when_the_provider_has_one_slot() {
    let suite = TestSuite::start(SuiteOptions {
        workers: 1,
        prefetch: 1,
        ..SuiteOptions::default()
    })
    .await;
    let log = std::env::temp_dir().join(format!("gz-prio-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut yaml = String::from("name: priorities\ntasks:\n  - id: gate\n    method: python/execute\n    parameters: { code: \"import time\\ntime.sleep(0.5)\\nresult = 1\" }\n");
    for (i, p) in [
        "low", "normal", "high", "urgent", "low", "urgent", "normal", "high",
    ]
    .iter()
    .enumerate()
    {
        yaml.push_str(&format!(
            "  - id: {p}{i}\n    method: python/execute\n    priority: {p}\n    dependencies: [gate]\n    parameters: {{ code: \"open('{}', 'a').write('{p}\\\\n')\\nresult = 1\" }}\n",
            log.display()
        ));
    }
    let file = workflow_file("prio.yaml", &yaml);
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let order: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        order,
        ["urgent", "urgent", "high", "high", "normal", "normal", "low", "low"],
        "ran in order {order:?}"
    );
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_survive_restarting_every_service() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let (code, doc) = suite.run_json(&example("fan_out_fan_in.yaml"));
    assert_eq!(code, 0);
    let id = doc["workflow_id"].as_str().unwrap().to_string();
    suite.kill_services();
    suite.start_services(&SuiteOptions::default()).await;
    let (code, out, err) = suite.gz(&["inspect", "workflow", &id, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["workflow"]["status"], "completed");
    let combine = task(&doc, "combine");
    assert_eq!(combine["result"]["result"]["total"], 30);
    let (code, out, _) = suite.gz(&["list", "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_resolver_is_re_planned_and_the_workflow_completes() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let mut yaml = String::from("name: chain-through-restart\ntasks:\n");
    for i in 0..12 {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("    dependencies: [s{}]\n", i - 1)
        };
        yaml.push_str(&format!(
            "  - id: s{i}\n    method: python/execute\n{deps}    parameters: {{ code: \"import time\\ntime.sleep(0.15)\\nresult = {i}\" }}\n"
        ));
    }
    let file = workflow_file("restart.yaml", &yaml);
    let (code, out, err) = suite.gz(&["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    suite.services[1].kill();
    let replacement = suite.hub.service("dependency-resolver", "dr-2", &[]);
    suite.hub.wait_registered(&["dr-2"]).await;
    let doc = suite.wait_finished(&id, Duration::from_secs(30)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    assert_eq!(task(&doc, "s11")["result"]["result"], 11);
    drop(replacement);
}

/// Tasks that wait for nothing and read no result run the moment their workflow is stored,
/// while the resolver cannot answer (frozen); a task that waits for one runs once the
/// resolver has its plan, and is told of the end that came before its answer
/// (`docs/protocol.md`, "Tasks ready at submission").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_ready_at_submission_run_before_the_resolver_answers() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    // The suite starts the queue-manager, resolver, engine and provider in this order.
    let resolver = &suite.services[1];
    resolver.signal(Sig::Stop);
    let yaml = [
        "name: opening",
        "tasks:",
        "  - id: a",
        "    method: python/execute",
        "    parameters: { code: \"result = 1\" }",
        "  - id: b",
        "    method: python/execute",
        "    parameters: { code: \"result = 2\" }",
        "  - id: c",
        "    method: python/execute",
        "    dependencies: [a]",
        "    parameters: { code: \"result = context['x'] + 10\", context: { x: \"${a.result}\" } }",
    ]
    .join("\n");
    let id = suite.submit(&workflow_file("opening.yaml", &yaml));
    let mut doc = serde_json::Value::Null;
    let ran = Instant::now();
    while ran.elapsed() < Duration::from_secs(20) {
        let (_, out, _) = suite.gz(&["inspect", "workflow", &id, "--json"]);
        doc = serde_json::from_str(&out).unwrap_or_default();
        if doc["tasks"]
            .as_array()
            .is_some_and(|ts| ts.iter().filter(|t| t["status"] == "completed").count() == 2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    resolver.signal(Sig::Cont);
    assert_eq!(task(&doc, "a")["status"], "completed", "{doc:#}");
    assert_eq!(task(&doc, "b")["status"], "completed", "{doc:#}");
    assert_eq!(task(&doc, "c")["status"], "pending", "{doc:#}");
    assert_eq!(doc["workflow"]["status"], "running", "{doc:#}");
    let doc = suite.wait_finished(&id, Duration::from_secs(30)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    assert_eq!(task(&doc, "c")["result"]["result"], 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_a_killed_provider_runs_again_on_another() {
    let mut suite = TestSuite::start(SuiteOptions {
        workers: 1,
        prefetch: 1,
        ..SuiteOptions::default()
    })
    .await;
    let _second = suite
        .hub
        .service("python-provider", "py-2", &["--workers", "1"]);
    suite.hub.wait_registered(&["py-2"]).await;
    let mut yaml = String::from("name: survive-a-provider\ntasks:\n");
    for i in 0..4 {
        yaml.push_str(&format!(
            "  - id: p{i}\n    method: python/execute\n    parameters: {{ code: \"import time\\ntime.sleep(1)\\nresult = {i}\" }}\n"
        ));
    }
    let file = workflow_file("providers.yaml", &yaml);
    let (code, out, err) = suite.gz(&["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    suite.services[3].kill(); // py-1, busy with one task
    let doc = suite.wait_finished(&id, Duration::from_secs(30)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let tasks = doc["tasks"].as_array().unwrap();
    assert!(
        tasks.iter().all(|t| t["provider_id"] == "py-2"),
        "every result comes from the survivor: {doc:#}"
    );
    assert!(
        tasks.iter().any(|t| t["attempts"].as_u64().unwrap() >= 2),
        "the lost task ran again: {doc:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_method_no_provider_serves_fail_instead_of_waiting_forever() {
    let suite = TestSuite::start(SuiteOptions {
        provider_grace: 1.0,
        ..SuiteOptions::default()
    })
    .await;
    let file = workflow_file(
        "unserved.yaml",
        "name: unserved\ntasks:\n  - id: ask\n    method: llm/chat\n    parameters: { model: llama3.2, messages: [{ role: user, content: hi }] }\n  - id: use\n    method: python/execute\n    parameters: { context: { a: \"${ask.response}\" }, code: \"result = 1\" }\n  - id: other\n    method: python/execute\n    parameters: { code: \"result = 2\" }\n",
    );
    let started = Instant::now();
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(task(&doc, "ask")["error"]["code"], "GZ2015", "{doc:#}");
    assert_eq!(task(&doc, "use")["status"], "skipped");
    assert_eq!(task(&doc, "other")["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_of_a_killed_engine_is_queued_again_and_a_new_engine_finishes_it() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let mut yaml = String::from("name: survive-an-engine\ntasks:\n");
    for i in 0..6 {
        yaml.push_str(&format!(
            "  - id: e{i}\n    method: python/execute\n    parameters: {{ code: \"import time\\ntime.sleep(0.8)\\nresult = {i}\" }}\n"
        ));
    }
    let file = workflow_file("engines.yaml", &yaml);
    let (code, out, err) = suite.gz(&["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;
    suite.services[2].kill(); // ee-1, holding running tasks
    let _replacement = suite.hub.service("execution-engine", "ee-2", &[]);
    let doc = suite.wait_finished(&id, Duration::from_secs(30)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    for i in 0..6 {
        assert_eq!(task(&doc, &format!("e{i}"))["result"]["result"], i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_process_mid_run_loses_nothing_with_the_embedded_store() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let runs =
        std::env::temp_dir().join(format!("gz-runs-{}-{}", std::process::id(), suite.hub.port));
    let _ = std::fs::remove_file(&runs);
    // 300 tasks in 30 chains of 10; each appends its id to a file when it runs.
    let yaml = chains_yaml("t", 30, 10, 0.01, Some(&runs));
    let file = workflow_file("crash.yaml", &yaml);
    let (code, out, err) = suite.gz(&["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(Duration::from_secs(30), || async {
        std::fs::read_to_string(&runs)
            .map(|s| s.lines().count() >= 60)
            .unwrap_or(false)
    })
    .await;
    // Kill everything at once: services and hub.
    suite.kill_services();
    let port = suite.hub.port;
    suite.hub.proc.kill();
    suite.hub = gleitzeit_e2e::TestHub::start_on(port).await;
    suite.start_services(&SuiteOptions::default()).await;
    let doc = suite.wait_finished(&id, Duration::from_secs(60)).await;
    let (twice, _) = assert_all_completed_once_recorded(&doc, 300, &runs);
    eprintln!("tasks run more than once (in flight at the kill): {twice}");
    let repeated: Vec<_> = executions(&runs)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(
        repeated.len() <= 30,
        "only tasks in flight at the kill may run twice: {repeated:?}"
    );
    let _ = std::fs::remove_file(runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_reconnects_catches_up_on_every_event() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let (client, mut incoming) = suite.hub.client().await;
    client
        .subscribe(&["events".to_string()])
        .await
        .expect("subscribe");
    let mut yaml = String::from("name: watched\ntasks:\n");
    for i in 0..30 {
        let deps = if i == 0 {
            String::new()
        } else {
            format!("    dependencies: [w{}]\n", i - 1)
        };
        yaml.push_str(&format!(
            "  - id: w{i}\n    method: python/execute\n{deps}    parameters: {{ code: \"import time\\ntime.sleep(0.05)\\nresult = {i}\" }}\n"
        ));
    }
    let file = workflow_file("watched.yaml", &yaml);
    let (code, out, err) = suite.gz(&["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The hub goes away and comes back: every connection drops and is rebuilt.
    let port = suite.hub.port;
    suite.hub.proc.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    suite.hub = gleitzeit_e2e::TestHub::start_on(port).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, out, _) = suite.gz(&["inspect", "workflow", &id, "--json"]);
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&out) {
            if doc["workflow"]["status"] == "completed" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "workflow did not complete after the hub restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Ok(env) = incoming.try_recv() {
        for env in gleitzeit_protocol::replies::EventBatch::unpack(env) {
            if env.payload["workflow_id"] == id.as_str() {
                if let Some(seq) = env.payload["seq"].as_u64() {
                    seen.insert(seq);
                }
            }
        }
    }
    // Catch up on whatever did not arrive.
    let last_contiguous = (1..).take_while(|s| seen.contains(s)).last().unwrap_or(0);
    let reply = client
        .request_with_timeout(
            gleitzeit_protocol::Target::Type("queue-manager".into()),
            "workflow_events",
            json!({ "workflow_id": id, "after_seq": last_contiguous }),
            Duration::from_secs(10),
        )
        .await
        .expect("catch-up");
    assert_eq!(reply["complete"], true, "{reply}");
    let mut events = Vec::new();
    for e in reply["events"].as_array().unwrap() {
        seen.insert(e["seq"].as_u64().unwrap());
        events.push(e["event"].as_str().unwrap().to_string());
    }
    let max = *seen.iter().max().unwrap();
    assert_eq!(
        seen.len() as u64,
        max,
        "every event from 1 to {max} is known"
    );
    assert!(
        max >= 60,
        "started and completed for 30 tasks at least: {max}"
    );
    let (_, all) = (
        0,
        client
            .request_with_timeout(
                gleitzeit_protocol::Target::Type("queue-manager".into()),
                "workflow_events",
                json!({ "workflow_id": id, "after_seq": 0 }),
                Duration::from_secs(10),
            )
            .await
            .expect("all events"),
    );
    assert_eq!(
        all["events"].as_array().unwrap().last().unwrap()["event"],
        "workflow_completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_an_engine_that_goes_silent_are_queued_again_when_its_lease_expires() {
    // The hub would notice the frozen engine only after a minute: the lease notices first.
    let hub = TestHub::start_with(0, &["--heartbeat-timeout", "60"]).await;
    let data = std::env::temp_dir().join(format!("gz-lease-{}-{}", std::process::id(), hub.port));
    let _ = std::fs::remove_dir_all(&data);
    let dd = data.display().to_string();
    let log = data.with_extension("log");
    let _ = std::fs::remove_file(&log);
    let _qm = hub.service(
        "queue-manager",
        "qm-1",
        &["--data-dir", &dd, "--lease-timeout", "2"],
    );
    let _dr = hub.service("dependency-resolver", "dr-1", &[]);
    let frozen = hub.service("execution-engine", "ee-1", &[]);
    let _py = hub.service("python-provider", "py-1", &["--workers", "2"]);
    hub.wait_registered(&["qm-1", "dr-1", "ee-1", "py-1"]).await;

    let yaml = format!(
        "name: lease\ntasks:\n  - id: slow\n    method: python/execute\n    parameters: {{ code: \"import time\\nopen('{}', 'a').write('start\\\\n')\\ntime.sleep(1.5)\\nresult = 7\" }}\n",
        log.display()
    );
    let file = workflow_file("lease.yaml", &yaml);
    let id = submit_at(&hub.url, &file);
    wait_for(Duration::from_secs(20), || async {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("start"))
    })
    .await;
    frozen.signal(Sig::Stop);
    let _other = hub.service("execution-engine", "ee-2", &[]);
    let doc = wait_finished_at(&hub.url, &id, Duration::from_secs(30)).await;
    frozen.signal(Sig::Cont);
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let slow = task(&doc, "slow");
    assert_eq!(slow["result"]["result"], 7);
    assert_eq!(slow["attempts"], 2, "{slow:#}");
    let starts = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(starts.lines().count(), 2, "ran once per attempt");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_suite_stops_every_part_cleanly_and_frees_its_port() {
    let suite = InProcessSuite::start(SuiteOptions::default()).await;
    let (code, doc) = suite.run_json(&example("hello.yaml"));
    assert_eq!(code, 0, "{doc:#}");
    let port = suite.port;
    let started = Instant::now();
    let report = suite.shutdown().await;
    assert!(report.unclean.is_empty(), "{report:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        started.elapsed()
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the hub still listens"
    );
}

/// A chain runs on primes and piggybacked lease requests: per hop, no lease request of its
/// own (it goes inside `task_outcomes`) and a quarter of a `tasks_finished`, and every task
/// still completes once, with its dependency's result (`docs/protocol.md`, "Primed tasks").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_sends_the_resolver_and_the_lease_few_messages_per_hop() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    const LEN: u64 = 60;
    let mut yaml = String::from("name: long-chain\ntasks:\n");
    for k in 0..LEN {
        let (deps, code) = if k == 0 {
            (String::new(), "result = 0".to_string())
        } else {
            (
                format!("    dependencies: [c{}]\n", k - 1),
                "result = context['prev'] + 1".to_string(),
            )
        };
        let context = if k == 0 {
            String::new()
        } else {
            format!(", context: {{ prev: \"${{c{}.result}}\" }}", k - 1)
        };
        yaml.push_str(&format!(
            "  - id: c{k}\n    method: python/execute\n{deps}    parameters: {{ code: \"{code}\"{context} }}\n"
        ));
    }
    let (finished, leases) = (
        hub_messages(&suite, "tasks_finished").await,
        hub_messages(&suite, "lease_tasks").await,
    );
    let id = suite.submit(&workflow_file("long-chain.yaml", &yaml));
    let doc = suite.wait_finished(&id, Duration::from_secs(60)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    assert_eq!(
        task(&doc, &format!("c{}", LEN - 1))["result"]["result"],
        json!(LEN - 1),
        "each result passed along"
    );
    let told = hub_messages(&suite, "tasks_finished").await - finished;
    let leased = hub_messages(&suite, "lease_tasks").await - leases;
    eprintln!("{LEN}-chain: {told} tasks_finished, {leased} lease_tasks");
    assert!(told <= LEN / 4 + 4, "{told} tasks_finished for {LEN} hops");
    assert!(
        leased <= LEN / 4,
        "{leased} lease_tasks of their own for {LEN} hops"
    );
}
