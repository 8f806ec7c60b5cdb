//! Unit tests of the SQLite store's schema handling and encoding (the contract tests in
//! `tests/` cover the `Store` behaviour on both backends).

use super::*;
use serde_json::json;

fn workflow(id: &str) -> WorkflowRecord {
    WorkflowRecord {
        id: id.to_string(),
        name: "wf".to_string(),
        status: WorkflowStatus::Running,
        spec: JsonText::of(&json!({ "tasks": [] })).expect("a spec"),
        base_dir: None,
        total_tasks: 1,
        created_at: 1,
        started_at: None,
        finished_at: None,
        error: None,
        owner: None,
    }
}

fn task(workflow_id: &str, task_id: &str) -> TaskRecord {
    TaskRecord::pending(workflow_id, task_id, task_id, "python/execute", 0)
}

fn store_with_one_task() -> SqliteStore {
    let store = SqliteStore::open_in_memory().expect("open");
    store
        .create_workflow(&workflow("wf"), &[task("wf", "a")])
        .expect("create");
    store
}

fn corrupt(store: &SqliteStore, sql: &str) {
    store.conn().execute(sql, []).expect("corrupt the row");
}

fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
    match result {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(needle), "`{message}` lacks `{needle}`")
        }
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

#[test]
fn unknown_task_status_is_a_corrupt_error() {
    let store = store_with_one_task();
    corrupt(&store, "UPDATE tasks SET status = 'exploded'");
    expect_corrupt(store.tasks("wf"), "task `wf/a`: column `status`");
    expect_corrupt(store.task(None, "a"), "unknown task status `exploded`");
}

#[test]
fn broken_json_is_a_corrupt_error() {
    let store = store_with_one_task();
    corrupt(&store, "UPDATE tasks SET result = '{not json'");
    expect_corrupt(store.tasks("wf"), "column `result`: invalid JSON");
    corrupt(&store, "UPDATE workflow_specs SET spec = '['");
    expect_corrupt(store.workflow("wf"), "workflow `wf`: column `spec`");
    // Listing does not read the spec, so it still works.
    assert_eq!(store.list_workflows(10, None).expect("list").len(), 1);
}

#[test]
fn negative_times_and_wrong_types_are_corrupt_errors() {
    let store = store_with_one_task();
    corrupt(&store, "UPDATE workflows SET created_at = -5");
    expect_corrupt(store.list_workflows(10, None), "negative value -5");
    corrupt(&store, "UPDATE tasks SET attempts = 'many'");
    expect_corrupt(store.task(Some("wf"), "a"), "column `attempts`");
    corrupt(&store, "UPDATE tasks SET attempts = 5000000000");
    expect_corrupt(store.task(Some("wf"), "a"), "column `attempts`");
    corrupt(&store, "UPDATE workflows SET status = 7");
    expect_corrupt(store.workflow("wf"), "column `status`");
}

#[test]
fn newer_schema_is_refused() {
    let store = SqliteStore::open_in_memory().expect("open");
    let conn = store.conn.into_inner().expect("not poisoned");
    conn.execute("INSERT INTO schema_version (version) VALUES (99)", [])
        .expect("bump version");
    match SqliteStore::init(conn, ":memory:".into()) {
        Err(StoreError::UnsupportedSchema { found, supported }) => {
            assert_eq!((found, supported), (99, SCHEMA_VERSION));
        }
        other => panic!("expected UnsupportedSchema, got {other:?}"),
    }
}

#[test]
fn numbers_too_large_for_sqlite_are_rejected() {
    let store = SqliteStore::open_in_memory().expect("open");
    let mut wf = workflow("wf");
    wf.created_at = u64::MAX;
    match store.create_workflow(&wf, &[]) {
        Err(StoreError::Invalid(message)) => assert!(message.contains("created_at")),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(store.workflow("wf").expect("read"), None);
}

#[test]
fn a_spec_is_written_in_place_and_read_back_whether_stored_as_blob_or_text() {
    let store = store_with_one_task();
    let kind = |store: &SqliteStore| -> String {
        store
            .conn()
            .query_row("SELECT typeof(spec) FROM workflow_specs", [], |r| r.get(0))
            .expect("kind")
    };
    assert_eq!(kind(&store), "blob");
    let spec = |store: &SqliteStore| store.workflow("wf").expect("read").expect("found").spec;
    assert_eq!(spec(&store).text(), Some(r#"{"tasks":[]}"#));
    // Rewritten with another length (an upsert of the workflow).
    let mut longer = workflow("wf");
    longer.spec = JsonText::of(&json!({ "tasks": [], "name": "ünïcode ✓" })).expect("a spec");
    store.apply(&[longer.clone()], &[]).expect("apply");
    assert_eq!(spec(&store), longer.spec);
    // A spec written as text (by an earlier version) reads the same.
    corrupt(
        &store,
        r#"UPDATE workflow_specs SET spec = '{"tasks": [1]}'"#,
    );
    assert_eq!(kind(&store), "text");
    assert_eq!(spec(&store).text(), Some(r#"{"tasks": [1]}"#));
    // Bytes that are not UTF-8 are corrupt data, not a panic.
    corrupt(&store, "UPDATE workflow_specs SET spec = x'ff7b7d'");
    expect_corrupt(store.workflow("wf"), "not UTF-8");
}
