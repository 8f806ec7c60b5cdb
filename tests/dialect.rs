//! The original's command line and task dialect end to end: `gz run --text`, `--vision`,
//! `--function`, `--workflow FILE`, the `gleitzeit` name for `gz`, and a workflow written
//! with `type: text | vision | function | python` tasks, validated (`--explain` shows the
//! normalised form) and run against a simulated LLM endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use gleitzeit_e2e::{bin, repo_root, task, workflow_file, LlmSim, Proc, SuiteOptions, TestSuite};
use serde_json::Value;

async fn with_llm(suite: &TestSuite) -> (LlmSim, Proc) {
    suite.with_llm_sim(&["--latency-ms", "5"], 4).await
}

fn doc(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_text_vision_and_function_runs() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (_sim, _provider) = with_llm(&suite).await;

    let (code, out, err) = suite.gz(&["run", "--text", "Explain quantum computing", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let d = doc(&out);
    let t = task(&d, "text");
    assert_eq!(t["method"], "llm/chat");
    assert!(
        t["result"]["response"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{t:#}"
    );

    let image = repo_root().join("examples/images/example.png");
    let (code, out, err) = suite.gz(&[
        "run",
        "--vision",
        &image.display().to_string(),
        "--prompt",
        "Describe this image",
        "--model",
        "llava",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(task(&doc(&out), "vision")["method"], "llm/vision");

    let (code, out, err) = suite.gz(&[
        "run",
        "--function",
        "analyze_numbers",
        "--args",
        "numbers=[1,5,10,15,20]",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        task(&doc(&out), "analyze_numbers")["result"]["result"]["sum"],
        51
    );

    // `--vision` needs `--prompt`; nothing at all is a usage error.
    let (code, _, _) = suite.gz(&["run", "--vision", "x.png"]);
    assert_eq!(code, 2);
    let (code, _, _) = suite.gz(&["run"]);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_in_the_originals_dialect_validates_explains_and_runs() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (_sim, _provider) = with_llm(&suite).await;
    let file = workflow_file(
        "original.yaml",
        r#"name: Data Processing Pipeline
tasks:
  - name: Generate Dataset
    type: function
    function_name: fibonacci
    kwargs: { n: 10 }
  - name: Analyze Numbers
    type: function
    function_name: analyze_numbers
    kwargs: { numbers: "{{Generate Dataset.result}}" }
    dependencies: [Generate Dataset]
  - name: Generate Summary
    type: text
    prompt: "Create a summary of this analysis: {{Analyze Numbers.result}}"
    model: llama3.2
    dependencies: [Analyze Numbers]
  - name: Script
    type: python
    code: "result = 6 * 7"
"#,
    );
    let path = file.display().to_string();
    let (code, out, err) = suite.gz(&["validate", &path, "--explain"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("method: python/function"), "{out}");
    assert!(out.contains("method: llm/chat"), "{out}");
    let (code, out, _) = suite.gz(&["validate", &path, "--explain", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(doc(&out)["normalized"]["tasks"][2]["method"], "llm/chat");

    // `gleitzeit` is the same program, and `--workflow FILE` names the file.
    let out = Command::new(bin("gleitzeit"))
        .args(["--hub-url", &suite.hub.url, "--api-key", &suite.hub.key])
        .args(["run", "--workflow", &path, "--json"])
        .output()
        .expect("gleitzeit runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = doc(&stdout);
    let by_name = |n: &str| {
        d["tasks"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no {n}: {d:#}"))
    };
    assert_eq!(by_name("Analyze Numbers")["result"]["result"]["sum"], 88);
    assert!(by_name("Generate Summary")["result"]["response"].is_string());
    assert_eq!(by_name("Script")["result"]["result"], 42);
}
