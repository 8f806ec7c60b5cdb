//! The contract of the `Store` trait as one suite of functions on `&dyn Store`, run against
//! every backend by `tests/sqlite.rs` and `tests/redis.rs` through [`contract_tests!`]:
//! round trips, batched updates, lookups, listing, recovery, atomicity, concurrency, and
//! the 100,000-task timing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use gleitzeit_store::{
    Creation, Idempotency, JsonText, Store, StoreError, TaskRecord, TaskStatus, WorkflowRecord,
    WorkflowStatus,
};
use serde_json::{json, Value};

/// Defines one `#[test]` per contract function, each on a fresh store made by `$open`
/// (an expression whose value dereferences to a `Store`; evaluated once per test).
macro_rules! contract_tests {
    ($open:expr) => {
        contract_tests!(@each $open;
            workflow_and_tasks_round_trip,
            apply_updates_and_reads_back,
            task_lookup_with_and_without_workflow_id,
            task_lookup_across_many_workflows,
            listing_is_most_recent_first_filters_by_status_and_omits_the_spec,
            replacing_a_workflow_moves_it_in_listing_and_recovery,
            unfinished_workflows_are_pending_or_running_oldest_first_with_spec,
            duplicate_create_fails_and_changes_nothing,
            null_json_and_extreme_numbers_round_trip,
            numbers_too_large_are_refused_and_nothing_is_written,
            ids_with_separators_do_not_collide,
            shared_across_threads,
            unloadable_workflow_is_marked_failed_and_leaves_recovery,
            an_idempotency_key_creates_one_workflow,
            concurrent_submits_with_one_key_create_one_workflow,
            head_and_counts_read_a_workflow_without_its_spec_and_tasks,
            pages_of_tasks_follow_the_workflow_order,
        );
    };
    (@each $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let store = $open;
                contract::$name(&*store);
            }
        )*
    };
}

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
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

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn workflow(id: &str, created_at: u64, status: WorkflowStatus) -> WorkflowRecord {
    WorkflowRecord {
        id: id.to_string(),
        name: format!("{id} name"),
        status,
        spec: spec(json!({ "name": id, "tasks": [{ "id": "a" }, { "id": "b" }] })),
        base_dir: Some("/data/workflows".to_string()),
        total_tasks: 2,
        created_at,
        started_at: None,
        finished_at: None,
        error: None,
        owner: Some("alice".to_string()),
    }
}

/// A spec record of `value`.
pub fn spec(value: Value) -> JsonText {
    JsonText::of(&value).expect("a spec")
}

pub fn task(workflow_id: &str, task_id: &str) -> TaskRecord {
    TaskRecord::pending(
        workflow_id,
        task_id,
        format!("{task_id} name"),
        "llm/generate",
        0,
    )
}

pub fn ids(workflows: &[WorkflowRecord]) -> Vec<&str> {
    workflows.iter().map(|wf| wf.id.as_str()).collect()
}

pub fn task_ids(tasks: &[TaskRecord]) -> Vec<&str> {
    tasks.iter().map(|t| &*t.task_id).collect()
}

pub fn workflow_and_tasks_round_trip(store: &dyn Store) {
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
    tasks[0].params = Some(JsonText::of_value(
        &json!({ "prompt": "Name a colour", "n": [1, 2.5, null] }),
    ));
    tasks[0].result = Some(JsonText::of_value(&json!({ "response": "blue ✓" })));
    tasks[0].provider_id = Some("ollama-1".into());
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

pub fn head_and_counts_read_a_workflow_without_its_spec_and_tasks(store: &dyn Store) {
    let wf = workflow("wf-h", 1_700_000_000_000, WorkflowStatus::Running);
    let mut tasks = vec![task("wf-h", "a"), task("wf-h", "b"), task("wf-h", "c")];
    tasks[0].status = TaskStatus::Completed;
    tasks[1].status = TaskStatus::Completed;
    store.create_workflow(&wf, &tasks).expect("create");
    store
        .create_workflow(
            &workflow("other", 1, WorkflowStatus::Running),
            &[task("other", "a")],
        )
        .expect("create other");

    let head = store.workflow_head("wf-h").expect("head").expect("stored");
    assert!(head.spec.is_null());
    assert_eq!(
        head,
        WorkflowRecord {
            spec: JsonText::null(),
            ..wf.clone()
        }
    );
    assert_eq!(store.workflow_head("nope").expect("head"), None);

    let mut counts = store.task_counts("wf-h").expect("counts");
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![(TaskStatus::Completed, 2), (TaskStatus::Pending, 1)]
    );
    let mut failed = tasks[2].clone();
    failed.status = TaskStatus::Failed;
    store.apply(&[], &[failed]).expect("apply");
    let mut counts = store.task_counts("wf-h").expect("counts");
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![(TaskStatus::Completed, 2), (TaskStatus::Failed, 1)]
    );
    assert!(store.task_counts("nope").expect("counts").is_empty());
}

pub fn pages_of_tasks_follow_the_workflow_order(store: &dyn Store) {
    let wf = workflow("wf-p", 1_700_000_000_000, WorkflowStatus::Running);
    let ids = ["e", "a", "d", "b", "c"];
    let mut tasks: Vec<TaskRecord> = ids.iter().map(|id| task("wf-p", id)).collect();
    tasks[1].status = TaskStatus::Failed;
    tasks[3].status = TaskStatus::Failed;
    store.create_workflow(&wf, &tasks).expect("create");
    let page = |status, offset, limit| -> Vec<String> {
        store
            .tasks_page("wf-p", status, offset, limit)
            .expect("page")
            .into_iter()
            .map(|t| t.task_id.to_string())
            .collect()
    };
    assert_eq!(page(None, 0, 2), ["e", "a"]);
    assert_eq!(page(None, 2, 2), ["d", "b"]);
    assert_eq!(page(None, 4, 2), ["c"]);
    assert!(page(None, 5, 2).is_empty());
    assert_eq!(page(None, 0, 100), ids);
    assert_eq!(page(Some(TaskStatus::Failed), 0, 10), ["a", "b"]);
    assert_eq!(page(Some(TaskStatus::Failed), 1, 10), ["b"]);
    assert!(page(Some(TaskStatus::Completed), 0, 10).is_empty());
    let full = store.tasks_page("wf-p", None, 1, 1).expect("page");
    assert_eq!(full, vec![tasks[1].clone()]);
    assert!(store
        .tasks_page("nope", None, 0, 10)
        .expect("page")
        .is_empty());
}

pub fn apply_updates_and_reads_back(store: &dyn Store) {
    let wf = workflow("wf", 100, WorkflowStatus::Pending);
    let tasks = vec![task("wf", "c"), task("wf", "a"), task("wf", "b")];
    store.create_workflow(&wf, &tasks).expect("create");

    // Status update without the spec: the stored spec is kept.
    let mut running = wf.clone();
    running.status = WorkflowStatus::Running;
    running.started_at = Some(150);
    running.spec = JsonText::null();
    let mut a = tasks[1].clone();
    a.status = TaskStatus::Completed;
    a.attempts = 1;
    a.params = Some(JsonText::of_value(&json!({ "x": 1 })));
    a.result = Some(JsonText::of_value(&json!({ "y": 2 })));
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
    replaced.spec = spec(json!({ "name": "v2" }));
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
    assert_eq!(
        err.code(),
        gleitzeit_protocol::errors::ErrorCode::StoreFailed
    );
    let b = store.task(Some("wf"), "b").expect("read").expect("exists");
    assert_eq!(
        b.status,
        TaskStatus::Pending,
        "nothing of a failed batch is applied"
    );

    store.apply(&[], &[]).expect("an empty batch is fine");
}

pub fn task_lookup_with_and_without_workflow_id(store: &dyn Store) {
    // Created out of order: "new" is the most recent workflow although inserted first.
    let mut shared_new = task("new", "shared");
    shared_new.method = "python/execute".into();
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

pub fn listing_is_most_recent_first_filters_by_status_and_omits_the_spec(store: &dyn Store) {
    let specs = [
        ("a", 100, WorkflowStatus::Completed),
        ("b", 300, WorkflowStatus::Running),
        ("c", 200, WorkflowStatus::Completed),
        ("d", 300, WorkflowStatus::Failed), // same millisecond as b, inserted later
        ("e", 50, WorkflowStatus::Pending),
    ];
    for (id, created_at, status) in specs {
        let mut wf = workflow(id, created_at, status);
        wf.spec = spec(json!({ "big": "x".repeat(100_000) }));
        store.create_workflow(&wf, &[]).expect("create");
    }

    let all = store.list_workflows(usize::MAX, None).expect("list");
    assert_eq!(ids(&all), ["d", "b", "c", "a", "e"]);
    assert!(
        all.iter().all(|wf| wf.spec.is_null()),
        "listing omits the spec"
    );
    let mut expected = workflow("c", 200, WorkflowStatus::Completed);
    expected.spec = JsonText::null();
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
    assert_eq!(
        d.spec.to_value()["big"].as_str().map(str::len),
        Some(100_000)
    );
}

pub fn unfinished_workflows_are_pending_or_running_oldest_first_with_spec(store: &dyn Store) {
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

pub fn duplicate_create_fails_and_changes_nothing(store: &dyn Store) {
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
    assert_eq!(
        err.code(),
        gleitzeit_protocol::errors::ErrorCode::StoreFailed
    );
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

pub fn task_lookup_across_many_workflows(store: &dyn Store) {
    // More workflows than one page of a backend that searches page by page.
    const WORKFLOWS: u64 = 600;
    store
        .create_workflow(
            &workflow("oldest", 1, WorkflowStatus::Completed),
            &[task("oldest", "needle")],
        )
        .expect("create");
    for i in 0..WORKFLOWS {
        let id = format!("wf-{i}");
        store
            .create_workflow(
                &workflow(&id, 10 + i, WorkflowStatus::Completed),
                &[task(&id, "hay")],
            )
            .expect("create");
    }
    assert_eq!(
        store.task(None, "needle").expect("lookup"),
        Some(task("oldest", "needle"))
    );
    let newest = format!("wf-{}", WORKFLOWS - 1);
    assert_eq!(
        store.task(None, "hay").expect("lookup"),
        Some(task(&newest, "hay"))
    );
    assert_eq!(store.task(None, "missing").expect("lookup"), None);
    assert_eq!(
        store.list_workflows(usize::MAX, None).expect("list").len() as u64,
        WORKFLOWS + 1
    );
}

pub fn replacing_a_workflow_moves_it_in_listing_and_recovery(store: &dyn Store) {
    for (id, created_at, status) in [
        ("a", 100, WorkflowStatus::Pending),
        ("b", 200, WorkflowStatus::Pending),
        ("c", 300, WorkflowStatus::Running),
    ] {
        store
            .create_workflow(&workflow(id, created_at, status), &[task(id, "t")])
            .expect("create");
    }

    // `a` becomes the newest and finishes; written back without its spec.
    let mut a = workflow("a", 400, WorkflowStatus::Completed);
    a.spec = JsonText::null();
    a.finished_at = Some(450);
    store.apply(std::slice::from_ref(&a), &[]).expect("apply");
    assert_eq!(
        ids(&store.list_workflows(10, None).expect("list")),
        ["a", "c", "b"]
    );
    let pending = store
        .list_workflows(10, Some(WorkflowStatus::Pending))
        .expect("list");
    assert_eq!(ids(&pending), ["b"]);
    let completed = store
        .list_workflows(10, Some(WorkflowStatus::Completed))
        .expect("list");
    assert_eq!(completed, [a.clone()]);
    assert_eq!(
        ids(&store.unfinished_workflows().expect("unfinished")),
        ["b", "c"]
    );
    let stored = store.workflow("a").expect("read").expect("exists");
    assert_eq!(stored.spec, workflow("a", 0, WorkflowStatus::Pending).spec);

    // Moved to the same millisecond as `a`: the workflow stored later is listed first, as
    // replacing keeps a workflow's place in insertion order.
    let mut b = workflow("b", 400, WorkflowStatus::Running);
    b.spec = JsonText::null();
    store.apply(std::slice::from_ref(&b), &[]).expect("apply");
    assert_eq!(
        ids(&store.list_workflows(10, None).expect("list")),
        ["b", "a", "c"]
    );
    assert_eq!(
        ids(&store.unfinished_workflows().expect("unfinished")),
        ["c", "b"]
    );
    assert!(store
        .list_workflows(10, Some(WorkflowStatus::Pending))
        .expect("list")
        .is_empty());
    assert_eq!(store.task(None, "t").expect("lookup"), Some(task("b", "t")));

    // The same task twice in one batch: the last one wins and it keeps one place.
    let mut first = task("c", "u");
    first.attempts = 1;
    let mut second = first.clone();
    second.attempts = 2;
    store
        .apply(&[], &[first, task("c", "v"), second.clone()])
        .expect("apply");
    let tasks = store.tasks("c").expect("tasks");
    assert_eq!(task_ids(&tasks), ["t", "u", "v"]);
    assert_eq!(tasks[1], second);
}

pub fn null_json_and_extreme_numbers_round_trip(store: &dyn Store) {
    let mut wf = workflow("wf", i64::MAX as u64, WorkflowStatus::Failed);
    wf.spec = JsonText::null();
    wf.base_dir = Some(String::new());
    wf.error = Some(Value::Null);
    wf.total_tasks = i64::MAX as u64;
    wf.started_at = Some(0);
    let mut t = task("wf", "t");
    t.params = Some(JsonText::null());
    t.result = Some(JsonText::of_value(&json!([])));
    t.error = Some(json!(""));
    t.priority = i32::MIN;
    t.provider_id = Some("".into());
    t.queued_at = Some(i64::MAX as u64);
    store
        .create_workflow(&wf, std::slice::from_ref(&t))
        .expect("create");
    assert_eq!(store.workflow("wf").expect("read"), Some(wf.clone()));
    assert_eq!(store.tasks("wf").expect("tasks"), [t.clone()]);
    assert_eq!(store.task(None, "t").expect("read"), Some(t));
    assert_eq!(store.list_workflows(1, None).expect("list"), [wf]);
}

pub fn numbers_too_large_are_refused_and_nothing_is_written(store: &dyn Store) {
    let mut wf = workflow("wf", 1, WorkflowStatus::Pending);
    wf.created_at = u64::MAX;
    let err = store.create_workflow(&wf, &[]).expect_err("too large");
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("created_at")),
        "{err}"
    );
    assert_eq!(store.workflow("wf").expect("read"), None);

    let wf = workflow("wf", 1, WorkflowStatus::Pending);
    store
        .create_workflow(&wf, &[task("wf", "a")])
        .expect("create");
    let mut running = wf.clone();
    running.status = WorkflowStatus::Running;
    let mut late = task("wf", "a");
    late.finished_at = Some(u64::MAX);
    let err = store
        .apply(&[running], &[task("wf", "b"), late])
        .expect_err("too large");
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.contains("finished_at")),
        "{err}"
    );
    assert_eq!(store.workflow("wf").expect("read"), Some(wf));
    assert_eq!(task_ids(&store.tasks("wf").expect("tasks")), ["a"]);
}

pub fn ids_with_separators_do_not_collide(store: &dyn Store) {
    let ids_ = [
        "x",
        "x:spec",
        "x:tasks",
        "x:order",
        "wf:x",
        "spec:x",
        "tasks",
        "ü ✓ {x}",
    ];
    for (n, id) in ids_.iter().enumerate() {
        let mut wf = workflow(id, n as u64, WorkflowStatus::Running);
        wf.spec = spec(json!({ "owner": id }));
        let tasks = [task(id, &format!("{id}:t")), task(id, "t:x")];
        store.create_workflow(&wf, &tasks).expect("create");
    }
    for (n, id) in ids_.iter().enumerate() {
        let mut wf = workflow(id, n as u64, WorkflowStatus::Running);
        wf.spec = spec(json!({ "owner": id }));
        assert_eq!(store.workflow(id).expect("read"), Some(wf));
        let tasks = store.tasks(id).expect("tasks");
        assert_eq!(tasks, [task(id, &format!("{id}:t")), task(id, "t:x")]);
    }
    assert_eq!(
        store.task(None, "t:x").expect("lookup"),
        Some(task(ids_[ids_.len() - 1], "t:x"))
    );
    let mut listed = ids(&store.list_workflows(usize::MAX, None).expect("list"))
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    listed.reverse();
    assert_eq!(listed, ids_);
}

/// Four threads writing and reading through one store at once.
pub fn an_idempotency_key_creates_one_workflow(store: &dyn Store) {
    let key = Idempotency {
        key: "0b1c-key",
        fingerprint: "spec-1",
    };
    assert_eq!(store.kept_submission(key.key).expect("read"), None);
    let wf = workflow("wf-1", 1, WorkflowStatus::Pending);
    let created = store
        .create_workflow_once(&key, &wf, &[task("wf-1", "a")])
        .expect("create");
    assert_eq!(created, Creation::Created);
    let kept = store.kept_submission(key.key).expect("read").expect("kept");
    assert_eq!(
        (kept.workflow_id.as_str(), kept.fingerprint.as_str()),
        ("wf-1", "spec-1")
    );

    // The same key and fingerprint again (a retried submit, even with another workflow id):
    // the first workflow, nothing written.
    for id in ["wf-1", "wf-2"] {
        let again = store
            .create_workflow_once(
                &key,
                &workflow(id, 2, WorkflowStatus::Pending),
                &[task(id, "b")],
            )
            .expect("resubmit");
        assert_eq!(
            again,
            Creation::Existing {
                workflow_id: "wf-1".to_string()
            }
        );
    }
    assert_eq!(
        ids(&store.list_workflows(10, None).expect("list")),
        ["wf-1"]
    );
    assert_eq!(task_ids(&store.tasks("wf-1").expect("tasks")), ["a"]);

    // The same key with another fingerprint: GZ3031, nothing written.
    let other = Idempotency {
        key: key.key,
        fingerprint: "spec-2",
    };
    let err = store
        .create_workflow_once(&other, &workflow("wf-3", 3, WorkflowStatus::Pending), &[])
        .expect_err("conflict");
    assert!(
        matches!(&err, StoreError::IdempotencyConflict { workflow_id, .. } if workflow_id == "wf-1"),
        "{err}"
    );
    assert_eq!(
        err.code(),
        gleitzeit_protocol::errors::ErrorCode::IdempotencyConflict
    );
    assert_eq!(store.workflow("wf-3").expect("read"), None);

    // A new key with a taken workflow id is refused like create_workflow, and keeps no key.
    let fresh = Idempotency {
        key: "fresh",
        fingerprint: "spec-1",
    };
    let err = store
        .create_workflow_once(&fresh, &workflow("wf-1", 4, WorkflowStatus::Pending), &[])
        .expect_err("id taken");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(store.kept_submission("fresh").expect("read"), None);
}

/// Eight threads submit one key at once: one workflow, and every caller learns its id.
pub fn concurrent_submits_with_one_key_create_one_workflow(store: &dyn Store) {
    let key = Idempotency {
        key: "race",
        fingerprint: "same",
    };
    let outcomes: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    let id = format!("wf-{i}");
                    match store
                        .create_workflow_once(
                            &key,
                            &workflow(&id, 1, WorkflowStatus::Pending),
                            &[task(&id, "a")],
                        )
                        .expect("create once")
                    {
                        Creation::Created => id,
                        Creation::Existing { workflow_id } => workflow_id,
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let stored = store.list_workflows(100, None).expect("list");
    assert_eq!(stored.len(), 1, "{:?}", ids(&stored));
    assert!(
        outcomes.iter().all(|id| *id == stored[0].id),
        "{outcomes:?}"
    );
}

pub fn shared_across_threads(store: &dyn Store) {
    store
        .create_workflow(&workflow("wf", 1, WorkflowStatus::Running), &[])
        .expect("create");
    std::thread::scope(|scope| {
        for worker in 0..4 {
            scope.spawn(move || {
                for i in 0..50 {
                    let mut t = task("wf", &format!("w{worker}-{i}"));
                    t.attempts = i;
                    store.apply(&[], &[t.clone()]).expect("apply");
                    let read = store
                        .task(Some("wf"), &format!("w{worker}-{i}"))
                        .expect("read");
                    assert_eq!(read, Some(t));
                }
            });
        }
    });
    assert_eq!(store.tasks("wf").expect("tasks").len(), 200);
}

/// 100,000 tasks inserted in one `create_workflow`, then two 1,000-task `apply`s, then
/// everything read back; `backend` names the store in the printed timings. Targets
/// (release): insert well under 2 s, apply well under 50 ms; the asserted bounds are
/// generous so that debug builds on slow machines pass.
pub fn timing_100k_tasks(store: &dyn Store, backend: &str) {
    const TASKS: usize = 100_000;

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
    wf.spec = spec(json!({ "name": "big", "tasks": spec_tasks }));
    wf.total_tasks = TASKS as u64;
    let tasks: Vec<TaskRecord> = (0..TASKS)
        .map(|i| {
            let mut t = task("big", &format!("task-{i}"));
            t.method = "python/execute".into();
            t.priority = (i % 3) as i32;
            t
        })
        .collect();

    let started = Instant::now();
    store.create_workflow(&wf, &tasks).expect("create");
    let insert = started.elapsed();

    // Two batches of 1,000 updates spread over the whole workflow (each on its own page):
    // the first right after the insert (for SQLite, while its WAL is being checkpointed).
    let batch = |offset: usize| -> Vec<TaskRecord> {
        tasks
            .iter()
            .skip(offset)
            .step_by(TASKS / 1_000)
            .map(|t| {
                let mut t = t.clone();
                t.status = TaskStatus::Completed;
                t.attempts = 1;
                t.params = Some(JsonText::of_value(&json!({ "code": "result = 1" })));
                t.result = Some(JsonText::of_value(&json!({ "result": 1, "stdout": "" })));
                t.provider_id = Some("python-1".into());
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
        "{backend} store timing ({} build): insert {TASKS} tasks {insert:?}; apply 1000 updates \
         {apply:?}, again {apply_again:?}; read {TASKS} tasks {read_tasks:?}; read workflow \
         with spec {read_workflow:?}; list {list:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    assert_eq!(read.len(), TASKS);
    assert_eq!(&*read[0].task_id, "task-0");
    assert_eq!(*read[TASKS - 1].task_id, format!("task-{}", TASKS - 1));
    assert_eq!(read[100], updates[1]);
    assert_eq!(stored.spec, wf.spec);
    assert_eq!(listed.len(), 1);
    assert!(insert.as_secs_f64() < 20.0, "insert took {insert:?}");
    assert!(
        read_tasks.as_secs_f64() < 20.0,
        "reading the tasks took {read_tasks:?}"
    );
    assert_eq!(read[150], more[1]);
    assert!(apply.as_secs_f64() < 5.0, "apply took {apply:?}");
    assert!(
        apply_again.as_secs_f64() < 5.0,
        "apply took {apply_again:?}"
    );
}

pub fn unloadable_workflow_is_marked_failed_and_leaves_recovery(store: &dyn Store) {
    let wf = workflow("poison", 10, WorkflowStatus::Running);
    store
        .create_workflow(&wf, &[task("poison", "a")])
        .expect("create");
    let error = json!({ "code": "GZ5002", "message": "stored spec unreadable" });
    store
        .mark_unloadable("poison", &error, 99)
        .expect("mark unloadable");
    assert!(store.unfinished_ids().expect("ids").is_empty());
    let stored = store.workflow("poison").expect("read").expect("kept");
    assert_eq!(stored.status, WorkflowStatus::Failed);
    assert_eq!(stored.error, Some(error));
    assert_eq!(stored.finished_at, Some(99));
}
