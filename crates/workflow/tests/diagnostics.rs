//! Every mistake in a workflow file is reported, with the line and column of its YAML node.

use gleitzeit_workflow::{codes, parse_workflow, Diagnostic, MethodCatalog, Severity};

fn catalog() -> &'static MethodCatalog {
    static CATALOG: std::sync::OnceLock<MethodCatalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(MethodCatalog::builtin)
}

fn errors(yaml: &str) -> Vec<Diagnostic> {
    match parse_workflow(yaml, catalog()) {
        Ok(parsed) => panic!("expected errors, got a valid spec: {:?}", parsed.spec),
        Err(diagnostics) => diagnostics,
    }
}

/// `(code, line, column)` of each diagnostic, in the order reported.
fn places(diagnostics: &[Diagnostic]) -> Vec<(&str, usize, usize)> {
    diagnostics
        .iter()
        .map(|d| {
            (
                d.code.as_str(),
                d.line.unwrap_or_default(),
                d.column.unwrap_or_default(),
            )
        })
        .collect()
}

fn only(diagnostics: &[Diagnostic]) -> &Diagnostic {
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    &diagnostics[0]
}

#[test]
fn yaml_syntax_error_is_placed() {
    let found = errors(
        r#"name: broken
tasks:
  - id: a
    method: python/execute
    params: { code: "x"
"#,
    );
    let d = only(&found);
    assert_eq!(d.code, codes::YAML_PARSE_ERROR);
    assert_eq!((d.line, d.column), (Some(5), Some(13)));
    assert!(d.message.contains("unclosed"), "{d}");
    assert!(
        d.to_string().starts_with("GZ7010 at 5:13: invalid YAML"),
        "{d}"
    );
}

#[test]
fn duplicate_yaml_keys_are_syntax_errors() {
    let d = errors("name: a\nname: b\ntasks: []\n").remove(0);
    assert_eq!(places(std::slice::from_ref(&d)), vec![("GZ7010", 2, 1)]);
    assert_eq!(d.message, "invalid YAML: duplicate mapping key: name");
}

#[test]
fn unknown_keys_are_placed_and_suggest_the_right_one() {
    let found = errors(
        r#"name: typos
descripton: misspelt
tasks:
  - id: a
    method: python/execute
    paramters: { code: x }
    retry:
      max_attempt: 2
"#,
    );
    assert_eq!(
        places(&found),
        vec![("GZ7001", 2, 1), ("GZ7001", 6, 5), ("GZ7001", 8, 7)]
    );
    assert_eq!(found[0].message, "unknown key `descripton` in the workflow");
    let hint = found[0].hint.as_deref().unwrap_or_default();
    assert!(
        hint.starts_with("did you mean `description`? allowed keys: name, description"),
        "{hint}"
    );
    assert!(found[1]
        .hint
        .as_deref()
        .unwrap_or_default()
        .starts_with("did you mean `parameters`?"));
    assert!(found[2]
        .hint
        .as_deref()
        .unwrap_or_default()
        .starts_with("did you mean `max_attempts`?"));
}

#[test]
fn wrong_types_and_missing_fields_are_reported() {
    let found = errors(
        r#"description: [not, a, string]
tasks:
  - id: a
    params: { code: x }
  - "just a string"
  - id: c
    method: python/execute
    timeout: soon
    dependencies: { a: 1 }
    params: [code]
"#,
    );
    assert_eq!(
        places(&found),
        vec![
            ("GZ7001", 1, 1),
            ("GZ7001", 1, 14),
            ("GZ7001", 3, 5),
            ("GZ7001", 5, 5),
            ("GZ7001", 8, 14),
            ("GZ7001", 9, 19),
            ("GZ7001", 10, 13),
        ],
        "{found:#?}"
    );
    assert_eq!(found[0].message, "the workflow has no `name`");
    assert_eq!(
        found[1].message,
        "the workflow's `description` must be a string, not a list"
    );
    assert_eq!(found[2].message, "task `a` has no `method`");
    assert_eq!(found[3].message, "task #2 must be a mapping, not a string");
    assert_eq!(
        found[4].message,
        "`timeout` of task `c` must be a number, not a string"
    );
}

#[test]
fn both_params_and_parameters_is_an_error() {
    let found = errors(
        r#"name: twice
tasks:
  - id: a
    method: python/execute
    params: { code: x }
    parameters: { code: y }
"#,
    );
    assert_eq!(places(&found), vec![("GZ7001", 6, 5)]);
    assert_eq!(
        found[0].message,
        "task `a` has both `params` and `parameters`"
    );
}

#[test]
fn dependency_mistakes_are_placed_on_the_entry() {
    let found = errors(
        r#"name: deps
tasks:
  - id: fetch
    method: python/execute
    params: { code: x }
  - id: fetch
    method: python/execute
    params: { code: y }
  - id: use
    method: python/execute
    dependencies: [fech, use]
    params: { code: z }
"#,
    );
    assert_eq!(
        places(&found),
        vec![("GZ3001", 6, 9), ("GZ3001", 11, 20), ("GZ3001", 11, 26)]
    );
    assert_eq!(found[0].message, "duplicate task id `fetch`");
    assert_eq!(
        found[0].hint.as_deref(),
        Some("the id is first used at line 3; ids must be unique")
    );
    assert_eq!(
        found[1].message,
        "task `use` depends on `fech`, which is not a task of this workflow"
    );
    assert_eq!(
        found[1].hint.as_deref(),
        Some("did you mean `fetch`? known task ids: fetch, fetch, use")
    );
    assert_eq!(found[2].message, "task `use` depends on itself");
}

#[test]
fn a_cycle_is_reported_with_its_path() {
    let found = errors(
        r#"name: cycle
tasks:
  - id: a
    method: python/execute
    dependencies: [b]
    params: { code: x }
  - id: b
    method: python/execute
    dependencies: [c]
    params: { code: x }
  - id: c
    method: python/execute
    dependencies: [a]
    params: { code: x }
  - id: free
    method: python/execute
    params: { code: x }
"#,
    );
    let d = only(&found);
    assert_eq!(d.code, codes::CIRCULAR_DEPENDENCY);
    assert_eq!(d.message, "circular dependency: a -> b -> c -> a");
    assert_eq!((d.line, d.column), (Some(5), Some(19)));
}

#[test]
fn a_cycle_through_a_reference_is_found() {
    let found = errors(
        r#"name: cycle by reference
tasks:
  - id: a
    method: python/execute
    params: { code: "${b.result}" }
  - id: b
    method: python/execute
    dependencies: [a]
    params: { code: x }
"#,
    );
    let d = only(&found);
    assert_eq!(d.message, "circular dependency: a -> b -> a");
    assert_eq!((d.line, d.column), (Some(3), Some(5)));
}

#[test]
fn unknown_method_lists_known_ones() {
    let found = errors(
        r#"name: method
tasks:
  - id: a
    method: llm/chatt
    params: { model: m }
"#,
    );
    let d = only(&found);
    assert_eq!(places(&found), vec![("GZ7003", 4, 13)]);
    assert_eq!(d.message, "task `a`: unknown method `llm/chatt`");
    let hint = d.hint.as_deref().unwrap_or_default();
    assert!(
        hint.starts_with(
            "did you mean `llm/chat`? known methods: http/request, llm/chat, llm/complete"
        ),
        "{hint}"
    );
}

#[test]
fn schema_violations_name_the_pointer_and_the_line() {
    let found = errors(
        r#"name: schema
tasks:
  - id: chat
    method: llm/chat
    params:
      model: llama3.2
      temperature: 3.5
      modle: typo
      messages:
        - role: robot
          content: hi
  - id: code
    method: python/execute
    params: { code: x, file: y.py }
  - id: embed
    method: llm/embed
    params: { model: m, input: 42 }
"#,
    );
    assert_eq!(
        places(&found),
        vec![
            ("GZ7002", 7, 20),
            ("GZ7002", 8, 14),
            ("GZ7002", 10, 17),
            ("GZ7002", 14, 13),
            ("GZ7002", 17, 32),
        ],
        "{found:#?}"
    );
    assert_eq!(
        found[0].message,
        "task `chat`: parameter `/temperature`: 3.5 is greater than the maximum of 2"
    );
    assert_eq!(
        found[1].message,
        "task `chat`: parameter `/modle`: unknown parameter `modle`"
    );
    assert_eq!(found[1].hint.as_deref(), Some("did you mean `model`?"));
    assert!(found[2]
        .message
        .starts_with("task `chat`: parameter `/messages/0/role`:"));
    assert_eq!(
        found[3].message,
        "task `code`: parameters: give exactly one of `file` (a script) or `code` (inline Python)"
    );
    assert_eq!(
        found[4].message,
        "task `embed`: parameter `/input`: `input` must be a text or a list of texts"
    );
}

#[test]
fn references_are_checked_before_anything_runs() {
    let found = errors(
        r#"name: refs
tasks:
  - id: first
    method: python/execute
    params: { code: "result = 1" }
  - id: second
    method: llm/generate
    params:
      model: m
      prompt: "Use ${frist.result} and ${first.result[x]}"
      system: "${second.response}"
"#,
    );
    assert_eq!(
        places(&found),
        vec![("GZ3013", 10, 15), ("GZ3013", 10, 15), ("GZ3013", 11, 15)],
        "{found:#?}"
    );
    assert_eq!(
        found[0].message,
        "task `second`: ${frist.result} refers to `frist`, which is not a task of this workflow"
    );
    assert!(found[0]
        .hint
        .as_deref()
        .unwrap_or_default()
        .starts_with("did you mean `first`?"));
    assert_eq!(
        found[1].message,
        "task `second`: malformed reference ${first.result[x]}: `[x]` is not a list index"
    );
    assert_eq!(
        found[2].message,
        "task `second`: ${second.response} refers to the task's own result"
    );
}

#[test]
fn a_reference_to_an_undocumented_result_field_warns() {
    let parsed = parse_workflow(
        r#"name: warn
tasks:
  - id: ask
    method: llm/generate
    params: { model: m, prompt: hi }
  - id: use
    method: python/execute
    params: { code: "${ask.respones}" }
"#,
        catalog(),
    )
    .expect("a warning does not fail the workflow");
    let w = only(&parsed.warnings);
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!((w.line, w.column), (Some(8), Some(21)));
    assert!(w
        .hint
        .as_deref()
        .unwrap_or_default()
        .starts_with("did you mean `response`?"));
}

#[test]
fn range_checks_are_placed() {
    let found = errors(
        r#"name: ranges
timeout: 0
tasks:
  - id: a
    method: python/execute
    timeout: 3601
    retry: { max_attempts: 11, base_delay: -1 }
    params: { code: x }
  - id: b.c
    method: python/execute
    protocol: llm/v1
    params: { code: x }
"#,
    );
    assert_eq!(
        places(&found),
        vec![
            ("GZ7011", 2, 10),
            ("GZ7011", 6, 14),
            ("GZ7011", 7, 28),
            ("GZ7011", 7, 44),
            ("GZ7001", 9, 9),
            ("GZ7001", 11, 15),
        ],
        "{found:#?}"
    );
    assert_eq!(
        found[1].message,
        "task `a`: `timeout` must be more than 0 and at most 3600 seconds, not 3601"
    );
    assert_eq!(
        found[5].message,
        "task `b.c`: method `python/execute` belongs to protocol `python/v1`, not `llm/v1`"
    );
}

#[test]
fn a_method_outside_the_protocol_namespaces_is_an_open_method_with_a_warning() {
    let parsed = parse_workflow(
        r#"name: open
tasks:
  - id: a
    method: text/shout
    params: { words: [1, 2] }
"#,
        catalog(),
    )
    .expect("an open method is accepted");
    let found = parsed.warnings;
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        (d.code.as_str(), d.line, d.column),
        ("GZ7003", Some(4), Some(13))
    );
    assert_eq!(
        d.message,
        "task `a`: method `text/shout` is not in protocols/*.yaml"
    );
    // Without a slash it is no method at all.
    let found = errors("name: bad\ntasks:\n  - id: a\n    method: shout\n");
    assert_eq!(places(&found), vec![("GZ7003", 4, 13)]);
}

#[test]
fn many_mistakes_are_reported_at_once() {
    let found = errors(
        r#"name: everything wrong
colour: blue
tasks:
  - id: a
    method: llm/chat
    dependencies: [ghost]
    params: { model: m, messages: "not a list" }
  - id: b
    method: python/execute
    priority: extreme
    params: { code: "${nobody.result}" }
  - id: c
    method: python/nothing
"#,
    );
    let codes: Vec<&str> = found.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(
        codes,
        vec!["GZ7001", "GZ3001", "GZ7002", "GZ7001", "GZ3013", "GZ7003"],
        "{found:#?}"
    );
    assert!(found.iter().all(|d| d.line.is_some() && d.column.is_some()));
    assert!(found.iter().all(|d| d.severity == Severity::Error));
}

#[test]
fn batch_workflows_get_a_clear_message() {
    let found = errors("name: batch\ntype: batch\ntasks: []\n");
    assert_eq!(places(&found)[0], ("GZ7001", 2, 1));
    assert!(found[0].message.contains("batch"));
}

#[test]
fn empty_and_non_mapping_files_are_rejected() {
    assert_eq!(places(&errors("")), vec![("GZ7001", 1, 1)]);
    assert_eq!(
        errors("# only a comment\n")[0].message,
        "the workflow file is empty"
    );
    assert_eq!(places(&errors("- a\n- b\n")), vec![("GZ7001", 1, 1)]);
}

#[test]
fn a_name_shared_by_several_tasks_cannot_be_a_dependency() {
    let found = errors(
        r#"name: ambiguous
tasks:
  - { id: a, name: Step, method: python/execute, params: { code: x } }
  - { id: b, name: Step, method: python/execute, params: { code: x } }
  - { id: c, method: python/execute, dependencies: [Step], params: { code: "{{Step.result}}" } }
"#,
    );
    assert_eq!(
        places(&found),
        vec![("GZ3001", 5, 53), ("GZ3013", 5, 76)],
        "{found:#?}"
    );
    assert_eq!(found[0].hint.as_deref(), Some("use one of their ids: a, b"));
}

#[test]
fn an_embedded_reference_still_has_to_give_the_right_type() {
    let found = errors(
        r#"name: embedded
tasks:
  - { id: plan, method: python/execute, params: { code: x } }
  - id: chat
    method: llm/generate
    params: { model: m, prompt: p, max_tokens: "about ${plan.result}" }
"#,
    );
    assert_eq!(places(&found), vec![("GZ7002", 6, 48)], "{found:#?}");
    assert!(found[0].message.contains("/max_tokens"));
}

#[test]
fn poison_numbers_are_out_of_range_with_their_place() {
    let found = errors(
        r#"name: poison
timeout: 1e300
tasks:
  - id: a
    method: python/execute
    timeout: 1e19
    retry:
      max_attempts: 99999999999
      base_delay: -0.5
      max_delay: 1e9
    params: { code: x }
  - id: b
    method: python/execute
    timeout: -1e19
    retry: -3
    params: { code: x }
"#,
    );
    assert_eq!(
        places(&found),
        vec![
            ("GZ7011", 2, 10),
            ("GZ7011", 6, 14),
            ("GZ7011", 8, 21),
            ("GZ7011", 9, 19),
            ("GZ7011", 10, 18),
            ("GZ7011", 14, 14),
            ("GZ7011", 15, 12),
        ],
        "{found:#?}"
    );
    assert!(found.iter().all(|d| d.code == codes::OUT_OF_RANGE));
    assert!(found[0].message.contains("7 days"), "{}", found[0].message);
    // YAML's `.nan` and `.inf` are refused by the reader itself, with their place.
    let nan = errors("name: n\ntimeout: .nan\ntasks: []\n");
    assert_eq!(places(&nan)[0], ("GZ7010", 2, 10));
}
