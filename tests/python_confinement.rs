//! Python confinement end to end through the real services: oversized output, an
//! out-of-range timeout and a path escape each fail their own task with their own code while
//! the provider stays connected and other tasks run; the provider's default timeout applies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gleitzeit_e2e::{task, workflow_file, SuiteOptions, TestSuite};
use serde_json::json;

const CONFINEMENT_YAML: &str = r#"
name: confinement
tasks:
  - id: loud
    method: python/execute
    parameters:
      code: "chunk = 'x' * (1 << 20)\nfor _ in range(100):\n    print(chunk)\n"
  - id: escape
    method: python/execute
    parameters: { file: "../../../../../../etc/passwd" }
  - id: forever
    method: python/execute
    parameters: { code: "result = 1", timeout: 1e300 }
  - id: fine_a
    method: python/execute
    parameters: { code: "result = 'a'" }
  - id: fine_b
    method: python/execute
    parameters: { code: "result = 'b'" }
  - id: dependent
    method: python/execute
    dependencies: [fine_a]
    parameters: { code: "result = 'after'" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_output_escapes_and_bad_timeouts_fail_alone_and_the_provider_stays() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file("confinement.yaml", CONFINEMENT_YAML);
    let started = Instant::now();
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "the workflow has failed tasks");
    assert!(started.elapsed() < Duration::from_secs(60));

    let loud = task(&doc, "loud");
    assert_eq!(
        loud["error"]["code"], "GZ2026",
        "{}",
        loud["error"]["message"]
    );
    let output = loud["error"]["details"]["output"].as_str().unwrap();
    assert!(
        output.len() <= 64 << 10,
        "an excerpt, not {} bytes",
        output.len()
    );
    assert!(output.starts_with("xxxx"));
    assert!(output.contains("\u{2026}[truncated "));

    let escape = &task(&doc, "escape")["error"];
    assert_eq!(escape["code"], "GZ2023", "{escape}");
    assert!(!escape.to_string().contains("root:"), "{escape}");

    let forever = &task(&doc, "forever")["error"];
    assert_eq!(forever["code"], "GZ7011", "{forever}");

    for (id, result) in [("fine_a", "a"), ("fine_b", "b"), ("dependent", "after")] {
        assert_eq!(task(&doc, id)["status"], "completed", "{id}");
        assert_eq!(task(&doc, id)["result"]["result"], json!(result));
    }

    // The provider never lost its connection: the same process serves the next workflow.
    let provider = suite
        .services
        .iter_mut()
        .find(|p| p.name() == "py-1")
        .expect("py-1");
    assert!(provider.running());
    let next = workflow_file(
        "next.yaml",
        "name: next\ntasks:\n  - id: t\n    method: python/execute\n    parameters: { code: \"result = 2\" }\n",
    );
    let (code, doc) = suite.run_json(&next);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(task(&doc, "t")["result"]["result"], json!(2));
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
    let _ = std::fs::remove_dir_all(next.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_default_timeout_applies_to_tasks_without_one() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    suite.services.retain(|p| p.name() != "py-1");
    let provider = suite.hub.service(
        "python-provider",
        "py-2",
        &["--workers", "2", "--default-timeout", "1"],
    );
    suite.services.push(provider);
    suite.hub.wait_registered(&["py-2"]).await;

    let file = workflow_file(
        "slow.yaml",
        "name: slow\ntasks:\n  - id: slow\n    method: python/execute\n    parameters: { code: \"import time\\ntime.sleep(30)\" }\n",
    );
    let started = Instant::now();
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    assert_eq!(task(&doc, "slow")["error"]["code"], "GZ2002", "{doc:#}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}
