//! The SQLite store: the shared contract suite (`contract/mod.rs`) on in-memory databases,
//! plus what only a file database has: persistence across reopening, its `info`, and the
//! 100,000-task timing on a file.

#[macro_use]
mod contract;

use contract::{ids, task, workflow, TempDir};
use gleitzeit_store::{SqliteStore, Store, StoreError, TaskStatus, WorkflowStatus};
use serde_json::json;

fn memory() -> Box<dyn Store> {
    Box::new(SqliteStore::open_in_memory().expect("open in-memory store"))
}

contract_tests!(memory());

#[test]
fn data_survives_closing_and_reopening() {
    let dir = TempDir::new("reopen");
    let path = dir.path().join("nested").join("state").join("gleitzeit.db");
    let wf = workflow("wf", 42, WorkflowStatus::Running);
    let mut done = task("wf", "a");
    done.status = TaskStatus::Completed;
    done.result = Some(gleitzeit_store::JsonText::of_value(&json!({ "ok": true })));
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

/// The contract's timing on a file database (WAL, background checkpoints).
#[test]
fn timing_100k_tasks() {
    let dir = TempDir::new("timing");
    let store = SqliteStore::open(&dir.path().join("timing.db")).expect("open");
    contract::timing_100k_tasks(&store, "sqlite");
}

/// Only the first commit after a checkpoint nudges the checkpointer thread, yet every commit
/// reaches the database file: a copy of the file alone (without its WAL) holds what was
/// checkpointed.
#[test]
fn every_commit_of_a_burst_is_checkpointed_into_the_database_file() {
    let dir = TempDir::new("checkpoint");
    let path = dir.path().join("ckpt.db");
    let store = SqliteStore::open(&path).expect("open");
    let copies = std::cell::Cell::new(0);
    let file_holds = |id: &str| -> bool {
        copies.set(copies.get() + 1);
        let copy = dir.path().join(format!("copy-{}.db", copies.get()));
        // A copy taken in the middle of a checkpoint may not open: not seen yet.
        std::fs::copy(&path, &copy).is_ok()
            && SqliteStore::open(&copy)
                .and_then(|s| s.workflow_head(id))
                .is_ok_and(|w| w.is_some())
    };
    let seen_within = |id: &str| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < until {
            if file_holds(id) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    };
    for round in 0..3 {
        for i in 0..50 {
            let id = format!("w{round}-{i}");
            store
                .create_workflow(&workflow(&id, 1, WorkflowStatus::Running), &[])
                .expect("create");
        }
        assert!(
            seen_within(&format!("w{round}-49")),
            "round {round}: the burst's last commit was never checkpointed"
        );
    }
}
