//! `GET /metrics` on the real binaries: a workflow with completed, failed, retried and LLM
//! tasks, then the hub's exposition read by Prometheus' own Python parser
//! (`prometheus_client.parser`, `pip install prometheus-client`), not by a regex; the key
//! check; and a frozen component that must not hold up the scrape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gleitzeit_e2e::{temp_path, wait_for, workflow_file, Sig, SuiteOptions, TestSuite};
use serde_json::Value;

/// Parses an exposition with `prometheus_client.parser.text_string_to_metric_families` and
/// prints every sample as JSON: `[{"family", "type", "name", "labels", "value"}]`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": s.name,
                        "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;

/// The samples of an exposition, as Prometheus' Python parser reads them.
fn parse(text: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition");
    let out = child.wait_with_output().expect("python3 ran");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition (needs `pip install prometheus-client`): {err}\n{text}"
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("samples as JSON")
}

/// `GET /metrics` with this key (none: no header); status, content type and body.
async fn scrape(hub_url: &str, key: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new()
        .get(format!("{hub_url}/metrics"))
        .timeout(Duration::from_secs(10));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.expect("the hub answers");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.text().await.unwrap_or_default())
}

/// The samples named `name` whose labels include `labels`.
fn matching<'a>(samples: &'a [Value], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Value> {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .collect()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn total(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(samples, name, labels)
        .iter()
        .map(|s| s["value"].as_f64().unwrap_or(0.0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_components_figures_reach_prometheus_through_the_hub() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (_sim, _llm) = suite.with_llm_sim(&["--latency-ms", "20"], 2).await;

    let counter = temp_path("flaky-counter");
    let yaml = format!(
        r#"name: metrics
tasks:
  - id: one
    method: python/execute
    parameters: {{ code: "result = 1" }}
  - id: two
    method: python/execute
    parameters: {{ code: "result = 2" }}
  - id: broken
    method: python/execute
    retry: {{ max_attempts: 1 }}
    parameters: {{ code: "raise ValueError('no')" }}
  - id: flaky
    method: python/execute
    retry: {{ max_attempts: 3, backoff: fixed, base_delay: 0.2, jitter: false }}
    parameters:
      code: |
        import os
        path = {counter:?}
        seen = os.path.exists(path)
        open(path, "w").write("x")
        if not seen:
            raise RuntimeError("first attempt fails")
        result = 3
  - id: ask
    method: llm/chat
    parameters: {{ model: llama3.2, messages: [{{ role: user, content: "hello" }}] }}
"#,
        counter = counter.display().to_string()
    );
    let (_, doc) = suite.run_json(&workflow_file("metrics.yaml", &yaml));
    assert_eq!(doc["status"], "failed", "{doc:#}");
    let _ = std::fs::remove_file(&counter);

    let started = Instant::now();
    let (status, content_type, text) = scrape(&suite.hub.url, Some(&suite.hub.key)).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    // Every component answers at once (each is awaited at most 2 s); the margin is for a
    // busy test machine.
    assert!(took < Duration::from_secs(5), "one scrape took {took:?}");
    let samples = parse(&text);

    let py = "python/execute";
    let finished = |method: &str, status: &str| {
        total(
            &samples,
            "gleitzeit_tasks_total",
            &[("method", method), ("status", status)],
        )
    };
    assert_eq!(finished(py, "completed"), 3.0, "{text}");
    assert_eq!(finished(py, "failed"), 1.0);
    assert_eq!(finished("llm/chat", "completed"), 1.0);
    let qm = [("component", "qm-1"), ("component_type", "queue-manager")];
    assert_eq!(
        matching(&samples, "gleitzeit_tasks_total", &qm).len(),
        3,
        "every queue-manager sample carries its component"
    );
    assert_eq!(
        total(&samples, "gleitzeit_task_retries_total", &[("method", py)]),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "gleitzeit_workflows_total",
            &[("status", "failed")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "gleitzeit_task_duration_seconds_count",
            &[("method", py)]
        ),
        5.0,
        "one, two, broken, and flaky twice"
    );
    let waits = matching(
        &samples,
        "gleitzeit_task_queue_wait_seconds_bucket",
        &[("method", "llm/chat"), ("le", "+Inf")],
    );
    assert_eq!(waits.len(), 1);
    assert_eq!(waits[0]["value"], 1.0);
    let depths = matching(&samples, "gleitzeit_queue_depth", &qm);
    assert!(!depths.is_empty());
    assert!(
        depths.iter().all(|s| s["value"] == 0.0),
        "nothing queued at the end"
    );
    assert_eq!(total(&samples, "gleitzeit_leases_outstanding", &qm), 0.0);

    let py_slots = |state: &str| {
        total(
            &samples,
            "gleitzeit_provider_slots",
            &[("component", "py-1"), ("state", state)],
        )
    };
    assert_eq!(py_slots("total"), 2.0, "the suite's two workers");
    assert_eq!(py_slots("used"), 0.0);
    let sim_labels = [("component", "llm-1"), ("endpoint", "sim")];
    assert!(
        total(
            &samples,
            "gleitzeit_llm_endpoint_requests_total",
            &sim_labels
        ) >= 1.0
    );
    assert_eq!(
        total(&samples, "gleitzeit_llm_endpoint_errors_total", &sim_labels),
        0.0
    );
    let healthy = [("endpoint", "sim"), ("state", "healthy")];
    assert_eq!(
        total(&samples, "gleitzeit_llm_endpoint_health", &healthy),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "gleitzeit_llm_endpoint_latency_seconds_count",
            &sim_labels
        ),
        total(
            &samples,
            "gleitzeit_llm_endpoint_requests_total",
            &sim_labels
        )
    );
    assert_eq!(
        total(&samples, "gleitzeit_llm_endpoint_slots", &sim_labels),
        2.0
    );

    assert!(
        total(
            &samples,
            "gleitzeit_hub_messages_total",
            &[("event", "execute_tasks")]
        ) >= 2.0,
        "a python batch and an LLM batch at least"
    );
    assert!(
        total(
            &samples,
            "gleitzeit_hub_messages_total",
            &[("event", "task_outcomes")]
        ) >= 2.0
    );
    assert_eq!(
        total(
            &samples,
            "gleitzeit_hub_components",
            &[("component_type", "ollama-provider"), ("health", "healthy")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "gleitzeit_scrape_components",
            &[("result", "answered")]
        ),
        5.0,
        "queue-manager, resolver, engine and both providers"
    );
    assert!(total(&samples, "gleitzeit_hub_connections", &[]) >= 5.0);
    assert_eq!(
        total(
            &samples,
            "gleitzeit_engine_providers",
            &[("component", "ee-1")]
        ),
        2.0
    );
    let types: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|s| s["name"] == "gleitzeit_hub_messages_total")
        .map(|s| s["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["counter"]);

    // The key: none or a wrong one is refused; any role reads, a VIEWER key too.
    let (status, _, body) = scrape(&suite.hub.url, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("GZ4001"), "{body}");
    let (status, _, _) = scrape(&suite.hub.url, Some("gzt_000000000000_nope")).await;
    assert_eq!(status, 401);
    let viewer = suite.hub.user_key("prometheus", "viewer");
    let (status, _, text) = scrape(&suite.hub.url, Some(&viewer)).await;
    assert_eq!(status, 200);
    assert!(!parse(&text).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_component_is_left_out_without_holding_up_the_scrape() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    // The suite starts the queue-manager, resolver, engine and provider in this order.
    let engine = 2;
    suite.services[engine].signal(Sig::Stop);
    let started = Instant::now();
    let (status, _, text) = scrape(&suite.hub.url, Some(&suite.hub.key)).await;
    let took = started.elapsed();
    suite.services[engine].signal(Sig::Cont);
    assert_eq!(status, 200, "{text}");
    // The hub waits 2 s for each component, all at once; a little more for a busy machine.
    assert!(
        took < Duration::from_millis(3500),
        "the scrape waited {took:?} for a frozen engine"
    );
    let samples = parse(&text);
    let engine_samples: Vec<&Value> = samples
        .iter()
        .filter(|s| s["labels"]["component"] == "ee-1")
        .collect();
    assert_eq!(engine_samples.len(), 1, "{engine_samples:?}");
    assert_eq!(engine_samples[0]["name"], "gleitzeit_scrape_errors_total");
    assert_eq!(engine_samples[0]["value"], 1.0);
    assert_eq!(
        total(
            &samples,
            "gleitzeit_scrape_components",
            &[("result", "failed")]
        ),
        1.0
    );
    assert_eq!(
        total(
            &samples,
            "gleitzeit_scrape_components",
            &[("result", "answered")]
        ),
        3.0,
        "the others answered"
    );
    assert_eq!(
        matching(
            &samples,
            "gleitzeit_leases_outstanding",
            &[("component", "qm-1")]
        )
        .len(),
        1
    );

    // Thawed, the engine registers again and answers the next scrape.
    suite.hub.wait_registered(&["ee-1"]).await;
    let mut answered = false;
    for _ in 0..50 {
        let (_, _, text) = scrape(&suite.hub.url, Some(&suite.hub.key)).await;
        let samples = parse(&text);
        if !matching(
            &samples,
            "gleitzeit_engine_providers",
            &[("component", "ee-1")],
        )
        .is_empty()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered, "the thawed engine answers again");
}

/// The plans the resolver holds (`gleitzeit_resolver_workflows`), from the hub's `/metrics`.
async fn resolver_workflows(suite: &TestSuite) -> f64 {
    let (status, _, text) = scrape(&suite.hub.url, Some(&suite.hub.key)).await;
    assert_eq!(status, 200, "{text}");
    total(&parse(&text), "gleitzeit_resolver_workflows", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_gone_before_its_plan_is_answered_is_dropped_by_the_resolver() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    // The suite starts the queue-manager, resolver, engine and provider in this order.
    let resolver = 1;
    // Frozen, the resolver answers the plan only after the workflow was cancelled (and left
    // the queue-manager's memory): the answer names a workflow the queue-manager no longer
    // holds, and the resolver must be told to drop it. (`a` runs at once, ready at the
    // submission; `b` waits for the resolver, so the workflow is still running.)
    suite.services[resolver].signal(Sig::Stop);
    let yaml = "name: gone\ntasks:\n  - id: a\n    method: python/execute\n    parameters: { code: \"result = 1\" }\n  - id: b\n    method: python/execute\n    dependencies: [a]\n    parameters: { code: \"result = 2\" }\n";
    let id = suite.submit(&workflow_file("gone.yaml", yaml));
    let (code, out, err) = suite.gz(&["cancel", &id]);
    suite.services[resolver].signal(Sig::Cont);
    assert_eq!(code, 0, "{out}{err}");
    wait_for(Duration::from_secs(15), || async {
        resolver_workflows(&suite).await == 0.0
    })
    .await;
    // A workflow that runs to its end is dropped as well.
    let (code, doc) = suite.run_json(&workflow_file("kept.yaml", &yaml.replace("gone", "kept")));
    assert_eq!(code, 0, "{doc:#}");
    wait_for(Duration::from_secs(15), || async {
        resolver_workflows(&suite).await == 0.0
    })
    .await;
}
