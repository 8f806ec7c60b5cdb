//! Every dialect of the original's workflow files parses into the same normalized spec.

use gleitzeit_workflow::{
    parse_workflow, prepare_spec, validate_spec, Backoff, MethodCatalog, OnFailure, Parsed,
    Priority, RetryPolicy, WorkflowSpec,
};
use serde_json::json;

fn catalog() -> &'static MethodCatalog {
    static CATALOG: std::sync::OnceLock<MethodCatalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(MethodCatalog::builtin)
}

fn parse_ok(yaml: &str) -> Parsed {
    match parse_workflow(yaml, catalog()) {
        Ok(parsed) => parsed,
        Err(diagnostics) => panic!(
            "expected a valid workflow, got:\n{}",
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

#[test]
fn params_and_parameters_mean_the_same() {
    let parsed = parse_ok(
        r#"name: both spellings
tasks:
  - id: one
    method: python/execute
    params: { code: "result = 1" }
  - id: two
    method: python/execute
    parameters: { code: "result = 2" }
"#,
    );
    assert_eq!(
        parsed.spec.tasks[0].parameters,
        json!({"code": "result = 1"})
    );
    assert_eq!(
        parsed.spec.tasks[1].parameters,
        json!({"code": "result = 2"})
    );
    assert!(parsed.warnings.is_empty());
}

#[test]
fn defaults_fill_ids_names_and_protocols() {
    let parsed = parse_ok(
        r#"name: defaults
tasks:
  - method: llm/chat
    params:
      model: llama3.2:latest
      messages: [{ role: user, content: hi }]
  - id: task-1-taken
    method: llm/embed
    params: { model: nomic-embed-text:latest, input: [a, b] }
  - name: Named
    method: python/execute
    params: { code: "result = 3" }
"#,
    );
    let tasks = &parsed.spec.tasks;
    assert_eq!(tasks[0].id, "task-1");
    assert_eq!(tasks[0].name, "task-1");
    assert_eq!(tasks[0].protocol, "llm/v1");
    assert_eq!(tasks[1].protocol, "llm/v1");
    assert_eq!(tasks[2].id, "task-3");
    assert_eq!(tasks[2].name, "Named");
    assert_eq!(tasks[2].protocol, "python/v1");
    assert_eq!(tasks[0].priority, Priority::Normal);
    assert_eq!(tasks[0].retry, RetryPolicy::default());
    assert_eq!(tasks[0].retry.max_attempts, 1, "no retry block: no retries");
    assert_eq!(parsed.spec.id, None);
    assert_eq!(parsed.spec.on_failure, OnFailure::Fail);
    assert_eq!(parsed.spec.metadata, json!({}));
}

#[test]
fn generated_ids_skip_ids_already_taken() {
    let parsed = parse_ok(
        r#"name: clash
tasks:
  - method: python/execute
    params: { code: a }
  - id: task-1
    method: python/execute
    params: { code: b }
"#,
    );
    assert_eq!(parsed.spec.tasks[0].id, "task-1-2");
    assert_eq!(parsed.spec.tasks[1].id, "task-1");
}

#[test]
fn dependencies_may_name_tasks_and_are_normalized_to_ids() {
    let parsed = parse_ok(
        r#"name: by name
tasks:
  - id: extract
    name: Extract Numbers
    method: python/execute
    params: { code: "result = [1, 2, 3]" }
  - id: analyze
    name: Analyze
    method: llm/generate
    dependencies: ["Extract Numbers", extract]
    params: { model: llama3.2, prompt: "Analyze" }
  - id: report
    method: llm/generate
    dependencies: Analyze
    params: { model: llama3.2, prompt: "Report" }
"#,
    );
    assert_eq!(parsed.spec.tasks[1].dependencies, vec!["extract"]);
    assert_eq!(parsed.spec.tasks[2].dependencies, vec!["analyze"]);
}

#[test]
fn references_add_implicit_dependencies() {
    let parsed = parse_ok(
        r#"name: implicit
tasks:
  - id: numbers
    name: Extract Numbers
    method: python/execute
    params: { code: "result = {'n': 3}" }
  - id: ask
    method: llm/chat
    params:
      model: llama3.2
      messages:
        - role: user
          content: "How many? ${numbers.result.n}"
  - id: old
    method: llm/complete
    dependencies: [ask]
    params: { model: llama3.2, prompt: "Summarize {{Extract Numbers.result}} and ${ask.response}" }
"#,
    );
    let tasks = &parsed.spec.tasks;
    assert_eq!(tasks[1].dependencies, vec!["numbers"]);
    assert_eq!(tasks[2].dependencies, vec!["ask", "numbers"]);
}

#[test]
fn integer_priorities_follow_one_rule() {
    let parsed = parse_ok(
        r#"name: priorities
tasks:
  - { id: p1, method: python/execute, priority: 1, params: { code: x } }
  - { id: p2, method: python/execute, priority: 2, params: { code: x } }
  - { id: p3, method: python/execute, priority: 3, params: { code: x } }
  - { id: p4, method: python/execute, priority: 4, params: { code: x } }
  - { id: p0, method: python/execute, priority: 0, params: { code: x } }
  - { id: p9, method: python/execute, priority: 9, params: { code: x } }
  - { id: word, method: python/execute, priority: HIGH, params: { code: x } }
"#,
    );
    let priorities: Vec<Priority> = parsed.spec.tasks.iter().map(|t| t.priority).collect();
    assert_eq!(
        priorities,
        vec![
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
            Priority::Low,
            Priority::Urgent,
            Priority::High,
        ]
    );
    let warnings: Vec<(Option<usize>, Option<usize>)> =
        parsed.warnings.iter().map(|w| (w.line, w.column)).collect();
    assert_eq!(warnings, vec![(Some(7), Some(49)), (Some(8), Some(49))]);
    assert!(parsed.warnings.iter().all(|w| w.code == "GZ7001"));
}

#[test]
fn legacy_keys_are_accepted_and_timeout_is_kept() {
    let parsed = parse_ok(
        r#"name: legacy
version: "1.0"
description: an old file
id: wf-legacy
timeout: 600
wait_for_completion: true
on_failure: continue
metadata: { owner: ops, tags: [nightly] }
tasks:
  - id: only
    method: python/execute
    timeout: 0.5
    retry:
      max_attempts: 5
      backoff: linear
      base_delay: 2
      max_delay: 30.5
      jitter: false
    params: { file: scripts/job.py, context: { day: 1 } }
"#,
    );
    let spec = &parsed.spec;
    assert_eq!(spec.id.as_deref(), Some("wf-legacy"));
    assert_eq!(spec.description.as_deref(), Some("an old file"));
    assert_eq!(spec.timeout, Some(600.0));
    assert_eq!(spec.on_failure, OnFailure::Continue);
    assert_eq!(spec.metadata, json!({"owner": "ops", "tags": ["nightly"]}));
    let task = &spec.tasks[0];
    assert_eq!(task.timeout, Some(0.5));
    assert_eq!(
        task.retry,
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff::Linear,
            base_delay: 2.0,
            max_delay: 30.5,
            jitter: false,
        }
    );
}

#[test]
fn a_retry_block_defaults_to_three_attempts() {
    let parsed = parse_ok(
        r#"name: retry
tasks:
  - { id: a, method: python/execute, retry: { backoff: fixed }, params: { code: x } }
  - { id: b, method: python/execute, retry: 4, params: { code: x } }
"#,
    );
    assert_eq!(parsed.spec.tasks[0].retry.max_attempts, 3);
    assert_eq!(parsed.spec.tasks[0].retry.backoff, Backoff::Fixed);
    assert_eq!(parsed.spec.tasks[1].retry.max_attempts, 4);
}

#[test]
fn the_seed_example_parses() {
    let parsed = parse_ok(
        r#"name: "Example Workflow"
tasks:
  - id: "llm_task"
    method: "llm/chat"
    parameters:
      model: "llama3.2"
      messages:
        - role: "user"
          content: "Hello world"

  - id: "python_task"
    method: "python/execute"
    dependencies: ["llm_task"]
    parameters:
      code: "print('LLM said:', '${llm_task.response}')"
"#,
    );
    assert_eq!(parsed.spec.tasks[1].dependencies, vec!["llm_task"]);
}

#[test]
fn a_spec_travels_as_json_and_validates_the_same() {
    let parsed = parse_ok(
        r#"name: roundtrip
tasks:
  - { id: a, name: First, method: python/execute, priority: urgent, params: { code: x } }
  - { id: b, method: llm/generate, params: { model: m, prompt: "${First.result}" } }
"#,
    );
    let json = serde_json::to_string(&parsed.spec).expect("serializes");
    let back: WorkflowSpec = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, parsed.spec);
    assert!(validate_spec(&back, catalog()).is_empty());
}

#[test]
fn json_specs_get_defaults_and_the_same_checks() {
    let raw: WorkflowSpec = serde_json::from_value(json!({
        "name": "from json",
        "tasks": [
            {"id": "a", "method": "python/execute", "params": {"code": "x"}, "priority": 3},
            {"id": "b", "method": "llm/generate",
             "parameters": {"model": "m", "prompt": "${a.result}"}},
        ]
    }))
    .expect("deserializes");
    assert!(validate_spec(&raw, catalog()).is_empty());
    let prepared = prepare_spec(raw, catalog()).expect("valid");
    assert_eq!(prepared.spec.tasks[0].priority, Priority::High);
    assert_eq!(prepared.spec.tasks[1].protocol, "llm/v1");
    assert_eq!(prepared.spec.tasks[1].name, "b");
    assert_eq!(prepared.spec.tasks[1].dependencies, vec!["a"]);

    let broken: WorkflowSpec = serde_json::from_value(json!({
        "name": "",
        "tasks": [
            {"id": "a", "method": "llm/chat", "parameters": {"model": "m"}, "timeout": 4000},
            {"id": "a", "method": "", "dependencies": ["zz"]},
        ]
    }))
    .expect("deserializes");
    let codes: Vec<String> = validate_spec(&broken, catalog())
        .into_iter()
        .map(|d| {
            assert_eq!(d.line, None);
            d.code
        })
        .collect();
    assert_eq!(
        codes,
        vec!["GZ7001", "GZ7011", "GZ7002", "GZ3001", "GZ7001", "GZ3001"],
        "name empty, timeout, schema (messages), duplicate id, no method, unknown dependency"
    );
}

#[test]
fn references_may_stand_where_the_schema_wants_another_type() {
    let parsed = parse_ok(
        r#"name: typed later
tasks:
  - id: plan
    method: python/execute
    params: { code: "result = {'budget': 64, 'history': []}" }
  - id: chat
    method: llm/chat
    params:
      model: llama3.2
      max_tokens: "${plan.result.budget}"
      temperature: "${plan.result.temperature}"
      messages: "${plan.result.history}"
"#,
    );
    assert_eq!(parsed.spec.tasks[1].dependencies, vec!["plan"]);
}

#[test]
fn the_originals_task_types_become_methods_and_parameters() {
    let parsed = parse_ok(
        r#"name: original dialect
tasks:
  - name: Generate Dataset
    type: function
    function_name: fibonacci
    kwargs: { n: 10 }
  - name: Summary
    type: text
    prompt: "Summarise {{Generate Dataset.result}}"
    model: llama3
    dependencies: [Generate Dataset]
  - name: Look
    type: vision
    prompt: Describe this image
    image_path: photo.jpg
    model: llava
  - name: Fetch
    type: http
    url: http://127.0.0.1:9/data
    method: POST
    json: { a: 1 }
  - name: Script
    type: python
    code: "result = 2"
"#,
    );
    let tasks = &parsed.spec.tasks;
    let methods: Vec<&str> = tasks.iter().map(|t| t.method.as_str()).collect();
    assert_eq!(
        methods,
        [
            "python/function",
            "llm/chat",
            "llm/vision",
            "http/request",
            "python/execute"
        ]
    );
    assert_eq!(
        tasks[0].parameters,
        json!({"function_name": "fibonacci", "kwargs": {"n": 10}})
    );
    assert_eq!(
        tasks[1].parameters,
        json!({"model": "llama3", "messages": [{"role": "user", "content": "Summarise {{Generate Dataset.result}}"}]})
    );
    assert_eq!(tasks[1].dependencies, [tasks[0].id.clone()]);
    assert_eq!(tasks[2].parameters["image_path"], "photo.jpg");
    assert_eq!(
        tasks[3].parameters,
        json!({"url": "http://127.0.0.1:9/data", "method": "POST", "json": {"a": 1}})
    );
    // `http/request` is an open method until a provider declares it: a warning, no error.
    assert!(
        parsed.warnings.iter().all(|w| w.code == "GZ7003"),
        "{:?}",
        parsed.warnings
    );
}

#[test]
fn dialect_mistakes_are_reported_with_their_place() {
    let found = parse_workflow(
        "name: bad\ntasks:\n  - id: a\n    type: telepathy\n  - id: b\n    type: text\n    method: llm/chat\n    prompt: hi\n  - id: c\n    type: function\n    function_name: f\n    parameters: { function_name: g }\n  - id: d\n    type: text\n    temperature: 9\n    prompt: hi\n",
        catalog(),
    )
    .expect_err("invalid");
    let messages: Vec<String> = found.iter().map(|d| d.to_string()).collect();
    let all = messages.join("\n");
    assert!(
        all.contains("GZ7001 at 4:11: task `a`: unknown task type `telepathy`"),
        "{all}"
    );
    assert!(
        all.contains("task `b` has both `type` and `method`"),
        "{all}"
    );
    assert!(
        all.contains("task `c` gives `function_name` both as a task field and in its parameters"),
        "{all}"
    );
    assert!(
        all.contains("GZ7002") && all.contains("temperature"),
        "{all}"
    );
}

#[test]
fn a_written_spec_leaves_out_defaults_and_reads_back_the_same() {
    let parsed = parse_ok(
        r#"name: written
tasks:
  - { id: a, method: python/execute, params: { code: x } }
  - { id: b, method: python/execute, dependencies: [a], priority: high, timeout: 5, retry: 2, params: { code: y } }
"#,
    );
    let text = serde_json::to_string(&parsed.spec).expect("writes");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let a = &value["tasks"][0];
    for key in ["retry", "priority", "timeout", "dependencies"] {
        assert!(
            a.get(key).is_none(),
            "{key} is the default: not written in {a}"
        );
    }
    let b = &value["tasks"][1];
    assert_eq!(b["dependencies"], json!(["a"]));
    assert_eq!(b["priority"], json!("high"));
    assert_eq!(b["timeout"], json!(5.0));
    assert_eq!(b["retry"]["max_attempts"], json!(2));
    let back: WorkflowSpec = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, parsed.spec);
    // What a person is shown has every setting written out.
    let shown = parsed.spec.explained();
    assert_eq!(shown["tasks"][0]["dependencies"], json!([]));
    assert_eq!(shown["tasks"][0]["priority"], json!("normal"));
    assert_eq!(shown["tasks"][0]["timeout"], json!(null));
    assert_eq!(shown["tasks"][0]["retry"]["max_attempts"], json!(1));
    assert_eq!(shown["tasks"][1]["retry"]["max_attempts"], json!(2));
    let read: WorkflowSpec = serde_json::from_value(shown).expect("reads back");
    assert_eq!(read, parsed.spec);
    assert_eq!(back.tasks[0].retry, RetryPolicy::default());
    assert_eq!(back.tasks[0].priority, Priority::Normal);
}
