//! Named functions (`python/function`) and open methods end to end through the real
//! services: the python-provider's built-ins declared at registration and listed by
//! `gz functions list`, called from YAML (names and `{{Task Name.result}}` references as in
//! the original) and by `gz run --function`; arguments checked against the function's schema
//! (at `gz validate` for `service_name: builtin`, by the provider otherwise); functions and
//! methods nobody declares fail with GZ2015 after the provider grace period.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gleitzeit_e2e::{task, workflow_file, SuiteOptions, TestSuite};
use serde_json::json;

fn quick_grace() -> SuiteOptions {
    SuiteOptions {
        provider_grace: 1.0,
        ..SuiteOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_functions_are_listed_with_their_signatures_and_provider() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (code, out, err) = suite.gz(&["functions", "list", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let functions = doc["functions"].as_array().expect("functions");
    let fib = functions
        .iter()
        .find(|f| f["name"] == "fibonacci")
        .unwrap_or_else(|| panic!("no fibonacci in {doc:#}"));
    assert_eq!(fib["service_name"], "builtin");
    assert!(fib["signature"]
        .as_str()
        .is_some_and(|s| s.starts_with("fibonacci(n: integer")));
    assert_eq!(fib["parameters"]["required"], json!(["n"]));
    let providers = fib["providers"].as_array().expect("providers");
    let python: Vec<serde_json::Value> = suite
        .hub
        .components()
        .await
        .into_iter()
        .filter(|c| c["component_type"] == "python-provider")
        .map(|c| c["component_id"].clone())
        .collect();
    assert_eq!(
        providers, &python,
        "the python-provider declares the built-ins"
    );
    assert!(functions.len() >= 10, "{doc:#}");

    let (code, out, _) = suite.gz(&["functions", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains("fibonacci(n: integer"), "{out}");
    assert!(out.contains("count_words"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_pipeline_of_built_in_functions_runs_with_name_references() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "pipeline.yaml",
        r#"name: Data Processing Pipeline
tasks:
  - name: Generate Dataset
    method: python/function
    parameters: { function_name: fibonacci, kwargs: { n: 10 } }
  - name: Analyze Numbers
    method: python/function
    dependencies: [Generate Dataset]
    parameters:
      function_name: analyze_numbers
      kwargs: { numbers: "{{Generate Dataset.result}}" }
  - name: Words
    method: python/function
    parameters: { function_name: count_words, args: ["one two three"], service_name: builtin }
"#,
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let tasks = doc["tasks"].as_array().expect("tasks");
    let by_name = |n: &str| {
        tasks
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {doc:#}"))
    };
    assert_eq!(
        by_name("Generate Dataset")["result"]["result"],
        json!([0, 1, 1, 2, 3, 5, 8, 13, 21, 34])
    );
    let analysis = &by_name("Analyze Numbers")["result"]["result"];
    assert_eq!(analysis["count"], 10, "{analysis}");
    assert_eq!(analysis["sum"], 88, "{analysis}");
    assert!(by_name("Words")["result"]["result"]
        .to_string()
        .contains('3'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_run_function_runs_one_function_and_checks_its_arguments_first() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (code, out, err) = suite.gz(&["run", "--function", "fibonacci", "--args", "n=7", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(doc["status"], "completed");
    assert_eq!(
        task(&doc, "fibonacci")["result"]["result"],
        json!([0, 1, 1, 2, 3, 5, 8])
    );

    // A built-in named with its service is checked before anything is submitted.
    let (code, out, err) = suite.gz(&[
        "run",
        "--function",
        "fibonacci",
        "--service",
        "builtin",
        "--args",
        "n=ten",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("GZ7002"), "{err}");
    assert!(err.contains("/kwargs/n"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_fail_the_task_with_gz7002_and_the_path() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "bad.yaml",
        "name: bad\ntasks:\n  - id: fib\n    method: python/function\n    parameters: { function_name: fibonacci, kwargs: { n: \"ten\" } }\n  - id: gone\n    method: python/function\n    parameters: { function_name: fibonacci, args: [1, 2, 3] }\n",
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    let fib = task(&doc, "fib");
    assert_eq!(fib["status"], "failed");
    assert_eq!(fib["error"]["code"], "GZ7002", "{fib:#}");
    assert!(
        fib["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("kwargs.n: ")),
        "{fib:#}"
    );
    assert_eq!(fib["attempts"], 1, "a schema violation is not retried");
    assert_eq!(task(&doc, "gone")["error"]["code"], "GZ7002");

    // `gz validate` checks a built-in named with its service, with line and column.
    let file = workflow_file(
        "bad-builtin.yaml",
        "name: bad\ntasks:\n  - id: fib\n    method: python/function\n    parameters:\n      function_name: fibonacci\n      service_name: builtin\n      kwargs: { n: \"ten\" }\n",
    );
    let (code, out, _) = suite.gz(&["validate", &file.display().to_string(), "--json"]);
    assert_eq!(code, 2, "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("json");
    let d = &doc["diagnostics"][0];
    assert_eq!(d["code"], "GZ7002", "{doc:#}");
    assert_eq!(d["line"], 8, "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_and_open_methods_nobody_declares_fail_with_gz2015() {
    let suite = TestSuite::start(quick_grace()).await;
    let file = workflow_file(
        "nobody.yaml",
        "name: nobody\ntasks:\n  - id: mine\n    method: python/function\n    parameters: { function_name: my_own_function, service_name: Python Tasks }\n  - id: open\n    method: text/shout\n    parameters: { words: [a, b] }\n  - id: fine\n    method: python/function\n    parameters: { function_name: fibonacci, kwargs: { n: 3 } }\n",
    );
    let (code, out, _) = suite.gz(&["validate", &file.display().to_string()]);
    assert_eq!(code, 0, "an open method is a warning: {out}");
    assert!(out.contains("GZ7003") && out.contains("warning"), "{out}");

    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 1, "{doc:#}");
    let mine = task(&doc, "mine");
    assert_eq!(mine["error"]["code"], "GZ2015", "{mine:#}");
    assert!(
        mine["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("my_own_function") && m.contains("Python Tasks")),
        "{mine:#}"
    );
    assert_eq!(task(&doc, "open")["error"]["code"], "GZ2015");
    assert_eq!(task(&doc, "fine")["status"], "completed");
}
