//! The SQLite store through the `Store` trait: round trips, batched updates, lookups,
//! listing, recovery, persistence across reopening, and the 100,000-task timing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gleitzeit_store::{
    SqliteStore, Store, StoreError, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus,
};
use serde_json::{json, Value};

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "gleitzeit-store-{label}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn workflow(id: &str, created_at: u64, status: WorkflowStatus) -> WorkflowRecord {
    WorkflowRecord {
        id: id.to_string(),
        name: format!("{id} name"),
        status,
        spec: json!({ "name": id, "tasks": [{ "id": "a" }, { "id": "b" }] }),
        base_dir: Some("/data/workflows".to_string()),
        total_tasks: 2,
        created_at,
        started_at: None,
        finished_at: None,
        error: None,
    }
}

fn task(workflow_id: &str, task_id: &str) -> TaskRecord {
    TaskRecord {
        workflow_id: workflow_id.to_string(),
        task_id: task_id.to_string(),
        name: format!("{task_id} name"),
        method: "llm/generate".to_string(),
        status: TaskStatus::Pending,
        priority: 0,
        attempts: 0,
        params: None,
        result: None,
        error: None,
        provider_id: None,
        queued_at: None,
        started_at: None,
        finished_at: None,
    }
}

fn memory() -> SqliteStore {
    SqliteStore::open_in_memory().expect("open in-memory store")
}

fn ids(workflows: &[WorkflowRecord]) -> Vec<&str> {
    workflows.iter().map(|wf| wf.id.as_str()).collect()
}

fn task_ids(tasks: &[TaskRecord]) -> Vec<&str> {
    tasks.iter().map(|t| t.task_id.as_str()).collect()
}

#[test]
fn workflow_and_tasks_round_trip() {
    let store = memory();
    let mut wf = workflow("wf-1", 1_700_000_000_000, WorkflowStatus::Failed);
    wf.started_at = Some(1_700_000_000_100);
    wf.finished_at = Some(1_700_000_000_900);
    wf.error = Some(json!({ "code": "GZ3004", "message": "b failed" }));
    // Insertion order deliberately differs from alphabetical order.
    let mut tasks = vec![
        task("wf-1", "zeta"),
        task("wf-1", "alpha"),
        task("wf-1", "mid"),
    ];
    tasks[0].status = TaskStatus::Completed;
    tasks[0].priority = -3;
    tasks[0].attempts = 2;
    tasks[0].params = Some(json!({ "prompt": "Name a colour", "n": [1, 2.5, null] }));
    tasks[0].result = Some(json!({ "response": "blue ✓" }));
    tasks[0].provider_id = Some("ollama-1".to_string());
    tasks[0].queued_at = Some(10);
    tasks[0].started_at = Some(20);
    tasks[0].finished_at = Some(30);
    tasks[1].status = TaskStatus::Failed;
    tasks[1].error = Some(json!("timeout"));
    tasks[1].priority = i32::MAX;
    tasks[1].attempts = u32::MAX;

    store.create_workflow(&wf, &tasks).expect("create");

    assert_eq!(store.workflow("wf-1").expect("read"), Some(wf));
    assert_eq!(store.tasks("wf-1").expect("tasks"), tasks);
    assert_eq!(store.workflow("nope").expect("read"), None);
    assert!(store.tasks("nope").expect("tasks").is_empty());
}

#[test]
fn apply_updates_and_reads_back() {
    let store = memory();
    let wf = workflow("wf", 100, WorkflowStatus::Pending);
    let tasks = vec![task("wf", "c"), task("wf", "a"), task("wf", "b")];
    store.create_workflow(&wf, &tasks).expect("create");

    // Status update without the spec: the stored spec is kept.
    let mut running = wf.clone();
    running.status = WorkflowStatus::Running;
    running.started_at = Some(150);
    running.spec = Value::Null;
    let mut a = tasks[1].clone();
    a.status = TaskStatus::Completed;
    a.attempts = 1;
    a.params = Some(json!({ "x": 1 }));
    a.result = Some(json!({ "y": 2 }));
    a.finished_at = Some(160);
    let added = task("wf", "d");
    store
        .apply(std::slice::from_ref(&running), &[a.clone(), added.clone()])
        .expect("apply");

    let stored = store.workflow("wf").expect("read").expect("exists");
    assert_eq!(stored.status, WorkflowStatus::Running);
    assert_eq!(stored.started_at, Some(150));
    assert_eq!(stored.spec, wf.spec, "a Null spec keeps the stored spec");
    let read = store.tasks("wf").expect("tasks");
    assert_eq!(
        task_ids(&read),
        ["c", "a", "b", "d"],
        "upsert keeps positions"
    );
    assert_eq!(read[1], a);
    assert_eq!(read[3], added);

    // A workflow record with a spec replaces the whole row, spec included.
    let mut replaced = running.clone();
    replaced.spec = json!({ "name": "v2" });
    replaced.status = WorkflowStatus::Completed;
    replaced.finished_at = Some(200);
    replaced.error = Some(json!({ "note": "done" }));
    store
        .apply(std::slice::from_ref(&replaced), &[])
        .expect("apply");
    assert_eq!(store.workflow("wf").expect("read"), Some(replaced));

    // A batch may add a new workflow together with its tasks.
    let wf2 = workflow("wf2", 300, WorkflowStatus::Pending);
    store
        .apply(std::slice::from_ref(&wf2), &[task("wf2", "x")])
        .expect("apply new workflow");
    assert_eq!(store.workflow("wf2").expect("read"), Some(wf2));
    assert_eq!(task_ids(&store.tasks("wf2").expect("tasks")), ["x"]);

    // The batch is atomic: a task of an unknown workflow rolls everything back.
    let mut b = tasks[2].clone();
    b.status = TaskStatus::Running;
    let err = store
        .apply(&[], &[b, task("ghost", "g")])
        .expect_err("unknown workflow");
    assert!(
        matches!(&err, StoreError::UnknownWorkflow { id } if id == "ghost"),
        "{err}"
    );
    assert_eq!(err.code(), "GZ5001");
    let b = store.task(Some("wf"), "b").expect("read").expect("exists");
    assert_eq!(
        b.status,
        TaskStatus::Pending,
        "nothing of a failed batch is applied"
    );

    store.apply(&[], &[]).expect("an empty batch is fine");
}

#[test]
fn task_lookup_with_and_without_workflow_id() {
    let store = memory();
    // Created out of order: "new" is the most recent workflow although inserted first.
    let mut shared_new = task("new", "shared");
    shared_new.method = "python/execute".to_string();
    store
        .create_workflow(
            &workflow("new", 2_000, WorkflowStatus::Running),
            &[shared_new.clone(), task("new", "only-new")],
        )
        .expect("create new");
    store
        .create_workflow(
            &workflow("old", 1_000, WorkflowStatus::Completed),
            &[task("old", "shared"), task("old", "only-old")],
        )
        .expect("create old");

    let found = store.task(Some("old"), "shared").expect("lookup");
    assert_eq!(found, Some(task("old", "shared")));
    assert_eq!(
        store.task(None, "shared").expect("lookup"),
        Some(shared_new)
    );
    assert_eq!(
        store.task(None, "only-old").expect("lookup"),
        Some(task("old", "only-old"))
    );
    assert_eq!(store.task(Some("new"), "only-old").expect("lookup"), None);
    assert_eq!(store.task(None, "missing").expect("lookup"), None);
    assert_eq!(store.task(Some("missing"), "shared").expect("lookup"), None);
}

#[test]
fn listing_is_most_recent_first_filters_by_status_and_omits_the_spec() {
    let store = memory();
    let specs = [
        ("a", 100, WorkflowStatus::Completed),
        ("b", 300, WorkflowStatus::Running),
        ("c", 200, WorkflowStatus::Completed),
        ("d", 300, WorkflowStatus::Failed), // same millisecond as b, inserted later
        ("e", 50, WorkflowStatus::Pending),
    ];
    for (id, created_at, status) in specs {
        let mut wf = workflow(id, created_at, status);
        wf.spec = json!({ "big": "x".repeat(100_000) });
        store.create_workflow(&wf, &[]).expect("create");
    }

    let all = store.list_workflows(usize::MAX, None).expect("list");
    assert_eq!(ids(&all), ["d", "b", "c", "a", "e"]);
    assert!(
        all.iter().all(|wf| wf.spec.is_null()),
        "listing omits the spec"
    );
    let mut expected = workflow("c", 200, WorkflowStatus::Completed);
    expected.spec = Value::Null;
    assert_eq!(all[2], expected, "every other field is listed");

    assert_eq!(
        ids(&store.list_workflows(2, None).expect("list")),
        ["d", "b"]
    );
    assert!(store.list_workflows(0, None).expect("list").is_empty());
    let completed = store
        .list_workflows(10, Some(WorkflowStatus::Completed))
        .expect("list");
    assert_eq!(ids(&completed), ["c", "a"]);
    let cancelled = store
        .list_workflows(10, Some(WorkflowStatus::Cancelled))
        .expect("list");
    assert!(cancelled.is_empty());

    // A listed record written back does not lose its spec.
    store.apply(&all[..1], &[]).expect("write back");
    let d = store.workflow("d").expect("read").expect("exists");
    assert_eq!(d.spec["big"].as_str().map(str::len), Some(100_000));
}

#[test]
fn unfinished_workflows_are_pending_or_running_oldest_first_with_spec() {
    let store = memory();
    for (id, created_at, status) in [
        ("done", 10, WorkflowStatus::Completed),
        ("running", 30, WorkflowStatus::Running),
        ("failed", 15, WorkflowStatus::Failed),
        ("pending", 20, WorkflowStatus::Pending),
        ("cancelled", 40, WorkflowStatus::Cancelled),
    ] {
        store
            .create_workflow(&workflow(id, created_at, status), &[])
            .expect("create");
    }
    let unfinished = store.unfinished_workflows().expect("unfinished");
    assert_eq!(ids(&unfinished), ["pending", "running"]);
    assert_eq!(
        unfinished[1],
        workflow("running", 30, WorkflowStatus::Running)
    );

    let mut finished = unfinished[0].clone();
    finished.status = WorkflowStatus::Cancelled;
    store.apply(&[finished], &[]).expect("apply");
    assert_eq!(
        ids(&store.unfinished_workflows().expect("unfinished")),
        ["running"]
    );
}

#[test]
fn duplicate_create_fails_and_changes_nothing() {
    let store = memory();
    let wf = workflow("wf", 1, WorkflowStatus::Pending);
    store
        .create_workflow(&wf, &[task("wf", "a")])
        .expect("create");

    let mut again = wf.clone();
    again.name = "other".to_string();
    let err = store
        .create_workflow(&again, &[task("wf", "b")])
        .expect_err("duplicate id");
    assert!(
        matches!(&err, StoreError::AlreadyExists { id } if id == "wf"),
        "{err}"
    );
    assert_eq!(err.code(), "GZ5001");
    assert_eq!(store.workflow("wf").expect("read"), Some(wf));
    assert_eq!(task_ids(&store.tasks("wf").expect("tasks")), ["a"]);

    // Duplicate task ids in one workflow: rejected, and nothing is stored.
    let err = store
        .create_workflow(
            &workflow("dup", 2, WorkflowStatus::Pending),
            &[task("dup", "x"), task("dup", "y"), task("dup", "x")],
        )
        .expect_err("duplicate task");
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("dup/x")),
        "{err}"
    );
    assert_eq!(store.workflow("dup").expect("read"), None);
    assert!(store.tasks("dup").expect("tasks").is_empty());

    // A task of another workflow is rejected before anything is written.
    let err = store
        .create_workflow(
            &workflow("mix", 3, WorkflowStatus::Pending),
            &[task("other", "x")],
        )
        .expect_err("foreign task");
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.workflow("mix").expect("read"), None);
}

#[test]
fn data_survives_closing_and_reopening() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("nested").join("state").join("gleitzeit.db");
    let wf = workflow("wf", 42, WorkflowStatus::Running);
    let mut done = task("wf", "a");
    done.status = TaskStatus::Completed;
    done.result = Some(json!({ "ok": true }));
    {
        let store = SqliteStore::open(&path).expect("open creates parent dirs");
        let info = store.info();
        assert_eq!(info.kind, "sqlite");
        assert_eq!(info.location, path.display().to_string());
        assert!(info.healthy);
        store
            .create_workflow(&wf, &[task("wf", "a"), task("wf", "b")])
            .expect("create");
        store
            .apply(&[], std::slice::from_ref(&done))
            .expect("apply");
    }
    assert!(path.exists());

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.workflow("wf").expect("read"), Some(wf.clone()));
    assert_eq!(store.tasks("wf").expect("tasks"), [done, task("wf", "b")]);
    assert_eq!(
        ids(&store.unfinished_workflows().expect("unfinished")),
        ["wf"]
    );
    let err = store.create_workflow(&wf, &[]).expect_err("still there");
    assert!(matches!(err, StoreError::AlreadyExists { .. }));
    drop(store);

    // Opening a third time (schema already present, version row already written) works too.
    let store = SqliteStore::open(&path).expect("reopen again");
    assert_eq!(store.list_workflows(10, None).expect("list").len(), 1);
}

#[test]
fn in_memory_info() {
    let info = memory().info();
    assert_eq!(
        (info.kind.as_str(), info.location.as_str()),
        ("sqlite", ":memory:")
    );
    assert!(info.healthy);
}

#[test]
fn shared_across_threads() {
    let store: Arc<dyn Store> = Arc::new(memory());
    store
        .create_workflow(&workflow("wf", 1, WorkflowStatus::Running), &[])
        .expect("create");
    let handles: Vec<_> = (0..4)
        .map(|worker| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let mut t = task("wf", &format!("w{worker}-{i}"));
                    t.attempts = i;
                    store.apply(&[], &[t]).expect("apply");
                    store
                        .task(Some("wf"), &format!("w{worker}-{i}"))
                        .expect("read");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("worker");
    }
    assert_eq!(store.tasks("wf").expect("tasks").len(), 200);
}

/// 100,000 tasks inserted in one `create_workflow`, then a 1,000-task `apply`, on a file
/// database. Targets (release): insert well under 2 s, apply well under 50 ms; the asserted
/// bounds are generous so that debug builds on slow machines pass.
#[test]
fn timing_100k_tasks() {
    const TASKS: usize = 100_000;
    let dir = TempDir::new("timing");
    let store = SqliteStore::open(&dir.path().join("timing.db")).expect("open");

    let spec_tasks: Vec<Value> = (0..TASKS)
        .map(|i| {
            json!({
                "id": format!("task-{i}"),
                "method": "python/execute",
                "parameters": { "code": "result = 1" },
                "dependencies": if i == 0 { vec![] } else { vec![format!("task-{}", i - 1)] },
            })
        })
        .collect();
    let mut wf = workflow("big", 1, WorkflowStatus::Pending);
    wf.spec = json!({ "name": "big", "tasks": spec_tasks });
    wf.total_tasks = TASKS as u64;
    let tasks: Vec<TaskRecord> = (0..TASKS)
        .map(|i| {
            let mut t = task("big", &format!("task-{i}"));
            t.method = "python/execute".to_string();
            t.priority = (i % 3) as i32;
            t
        })
        .collect();

    let started = Instant::now();
    store.create_workflow(&wf, &tasks).expect("create");
    let insert = started.elapsed();

    // Two batches of 1,000 updates spread over the whole workflow (each on its own page):
    // the first right after the insert, while its WAL is still being checkpointed.
    let batch = |offset: usize| -> Vec<TaskRecord> {
        tasks
            .iter()
            .skip(offset)
            .step_by(TASKS / 1_000)
            .map(|t| {
                let mut t = t.clone();
                t.status = TaskStatus::Completed;
                t.attempts = 1;
                t.params = Some(json!({ "code": "result = 1" }));
                t.result = Some(json!({ "result": 1, "stdout": "" }));
                t.provider_id = Some("python-1".to_string());
                t.started_at = Some(1_000);
                t.finished_at = Some(2_000);
                t
            })
            .collect()
    };
    let updates = batch(0);
    assert_eq!(updates.len(), 1_000);
    let started = Instant::now();
    store.apply(&[], &updates).expect("apply");
    let apply = started.elapsed();
    let more = batch(50);
    let started = Instant::now();
    store.apply(&[], &more).expect("apply");
    let apply_again = started.elapsed();

    let started = Instant::now();
    let read = store.tasks("big").expect("tasks");
    let read_tasks = started.elapsed();
    let started = Instant::now();
    let stored = store.workflow("big").expect("read").expect("exists");
    let read_workflow = started.elapsed();
    let started = Instant::now();
    let listed = store.list_workflows(10, None).expect("list");
    let list = started.elapsed();

    eprintln!(
        "store timing ({} build): insert {TASKS} tasks {insert:?}; apply 1000 updates \
         {apply:?}, again {apply_again:?}; read {TASKS} tasks {read_tasks:?}; read workflow \
         with spec {read_workflow:?}; list {list:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    assert_eq!(read.len(), TASKS);
    assert_eq!(read[0].task_id, "task-0");
    assert_eq!(read[TASKS - 1].task_id, format!("task-{}", TASKS - 1));
    assert_eq!(read[100], updates[1]);
    assert_eq!(stored.spec, wf.spec);
    assert_eq!(listed.len(), 1);
    assert!(insert.as_secs_f64() < 20.0, "insert took {insert:?}");
    assert_eq!(read[150], more[1]);
    assert!(apply.as_secs_f64() < 5.0, "apply took {apply:?}");
    assert!(
        apply_again.as_secs_f64() < 5.0,
        "apply took {apply_again:?}"
    );
}
