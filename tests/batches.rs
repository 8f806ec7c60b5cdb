//! Outcome batches under faults (issue 16): while outcomes travel in batches (the engine
//! sends what finished meanwhile together, the queue-manager handles consecutive outcome
//! envelopes as one step), the engine and the provider are SIGKILLed together in the middle
//! of a 1,500-task run and replaced; every task completes with exactly one recorded result,
//! and only work in flight at the kill runs twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gleitzeit_e2e::{
    assert_all_completed_once_recorded, chains_yaml, executions, temp_path, wait_for,
    workflow_file, SuiteOptions, TestSuite,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_engine_and_the_provider_mid_batch_loses_nothing() {
    let mut suite = TestSuite::start(SuiteOptions {
        workers: 4,
        prefetch: 16,
        ..SuiteOptions::default()
    })
    .await;
    let dir = temp_path("batch-kill");
    std::fs::create_dir_all(&dir).expect("dir");
    let log = dir.join("runs.log");
    // 1,500 independent tasks (chains of one): outcomes arrive faster than one at a time.
    let id = suite.submit(&workflow_file(
        "batch-kill.yaml",
        &chains_yaml("t", 1500, 1, 0.002, Some(&log)),
    ));
    wait_for(Duration::from_secs(60), || async {
        executions(&log).len() >= 300
    })
    .await;
    // ee-1 and py-1 at once, while batches are on their way.
    suite.services[2].kill();
    suite.services[3].kill();
    let at_kill = executions(&log).len();
    let _engine = suite
        .hub
        .service("execution-engine", "ee-2", &["--prefetch", "16"]);
    let _provider = suite
        .hub
        .service("python-provider", "py-2", &["--workers", "4"]);
    suite.hub.wait_registered(&["ee-2", "py-2"]).await;
    let doc = suite.wait_finished(&id, Duration::from_secs(120)).await;
    let (twice, extra) = assert_all_completed_once_recorded(&doc, 1500, &log);
    eprintln!("ran when killed: {at_kill}; tasks run twice: {twice} ({extra} extra runs)");
    assert!(
        at_kill < 1500,
        "the kill came in the middle of the run ({at_kill} of 1500 had run)"
    );
    // At most what the dead engine held (prefetch 16 × 4 slots) and what the provider was
    // running, plus outcomes on their way, may run again.
    assert!(twice <= 128, "{twice} tasks ran twice");
    let _ = std::fs::remove_dir_all(&dir);
}
