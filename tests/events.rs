//! Watchers get the queue-manager's events in batches: a watcher of a big workflow receives
//! far fewer envelopes than events, yet every event exactly once and in `seq` order, the
//! same ones a catch-up returns; and `gz run` of a big workflow, not on a terminal, prints
//! progress lines and a summary instead of a line per task (unless `--each-task`); the tasks
//! of a big workflow are read in pages (`workflow_get` with `offset`, `limit`, `status`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gleitzeit_e2e::{chains_yaml, gz_at_with_env, workflow_file, SuiteOptions, TestSuite};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::replies::EventBatch;
use gleitzeit_protocol::Target;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_of_a_2000_task_workflow_gets_every_event_once_in_few_envelopes() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (client, mut incoming) = suite.hub.client().await;
    client
        .subscribe(&[rooms::EVENTS.to_string()])
        .await
        .expect("subscribe");
    let file = workflow_file("wide.yaml", &chains_yaml("t", 2000, 1, 0.0, None));
    let id = suite.submit(&file);

    let mut envelopes = 0usize;
    let mut live: Vec<(u64, String)> = Vec::new();
    // Each task's events in the order they were numbered.
    let mut per_task: std::collections::HashMap<String, Vec<String>> = Default::default();
    tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            let env = incoming.recv().await.expect("client open");
            // The client keeps a batch's payload as text (`events::READ_AS_TEXT`).
            let ours = env
                .payload_as::<EventBatch>()
                .is_ok_and(|b| b.workflow_id == id);
            if !ours {
                continue;
            }
            assert_eq!(env.event, events::EVENT_BATCH, "{env:?}");
            envelopes += 1;
            let mut ended = false;
            for e in EventBatch::unpack(env) {
                assert_eq!(e.payload["workflow_id"], id.as_str());
                let seq = e.payload["seq"].as_u64().expect("every event has a seq");
                ended |= e.event == events::WORKFLOW_COMPLETED;
                if let Some(task) = e.payload["task_id"].as_str() {
                    per_task
                        .entry(task.to_string())
                        .or_default()
                        .push(e.event.clone());
                }
                live.push((seq, e.event));
            }
            if ended {
                return;
            }
        }
    })
    .await
    .expect("the workflow completes within 3 minutes");

    let seqs: Vec<u64> = live.iter().map(|(s, _)| *s).collect();
    let n = seqs.len() as u64;
    assert_eq!(
        seqs,
        (1..=n).collect::<Vec<_>>(),
        "every event exactly once, in seq order"
    );
    // Every task was ready at submission: announced queued, then started, then completed
    // (the engines' first answers go out before the announcements are written, but the
    // announcements are numbered first).
    assert_eq!(per_task.len(), 2000);
    for (task, seen) in &per_task {
        assert_eq!(
            seen,
            &[
                events::TASK_QUEUED,
                events::TASK_STARTED,
                events::TASK_COMPLETED
            ],
            "{task}"
        );
    }
    let count = |name: &str| live.iter().filter(|(_, e)| e == name).count();
    assert_eq!(count(events::TASK_STARTED), 2000);
    assert_eq!(count(events::TASK_COMPLETED), 2000);
    assert!(
        envelopes * 5 <= live.len(),
        "{envelopes} envelopes for {} events: batches should carry many each",
        live.len()
    );
    eprintln!(
        "{} events in {envelopes} envelopes ({} workflow_progress)",
        live.len(),
        count(events::WORKFLOW_PROGRESS)
    );

    // A catch-up from the start returns the very same events.
    let reply = client
        .request_with_timeout(
            Target::Type("queue-manager".into()),
            events::WORKFLOW_EVENTS,
            json!({ "workflow_id": id, "after_seq": 0 }),
            Duration::from_secs(30),
        )
        .await
        .expect("catch-up");
    assert_eq!(reply["complete"], true);
    let kept: Vec<(u64, String)> = reply["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["event"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(kept, live);
    client.close().await;
}

/// A workflow of `ok` tasks that complete and one (`bad`) that fails.
fn big_failing_yaml(ok: usize) -> String {
    let mut yaml = chains_yaml("t", ok, 1, 0.0, None);
    yaml.push_str("  - id: bad\n    method: python/execute\n    parameters: { code: \"raise ValueError('nope')\" }\n");
    yaml
}

fn lines_with(text: &str, what: &str) -> usize {
    text.lines().filter(|l| l.contains(what)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_run_of_a_big_workflow_prints_a_summary_when_not_on_a_terminal() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file("big.yaml", &big_failing_yaml(60));
    let path = file.display().to_string();

    // Not a terminal (the test captures both streams): progress lines and a summary.
    let (code, out, err) = suite.gz(&["run", &path]);
    assert_eq!(code, 1, "a failed task fails the run: {out}{err}");
    assert_eq!(
        lines_with(&err, " completed ("),
        0,
        "no line per task: {err}"
    );
    assert!(err.contains("submitted workflow"), "{err}");
    assert!(err.contains("61/61 tasks finished"), "the end line: {err}");
    assert!(out.contains("61 tasks: 60 completed, 1 failed"), "{out}");
    assert!(
        out.contains("tasks by status: completed: 60, failed: 1"),
        "{out}"
    );
    assert!(
        out.contains("failed: bad  GZ2025"),
        "the failed task: {out}"
    );
    assert_eq!(lines_with(&out, "t17_0"), 0, "no row per task: {out}");
    assert!(out.lines().count() < 10, "{out}");

    // --each-task: every task's events and every task's row, as for a small run.
    let (code, out, err) = suite.gz(&["run", &path, "--each-task"]);
    assert_eq!(code, 1);
    assert_eq!(lines_with(&err, " completed ("), 60, "{err}");
    assert_eq!(lines_with(&out, "t17_0"), 1, "{out}");
    assert!(out.lines().count() > 61, "{out}");

    // --json keeps its document with every task.
    let (code, out, _) = suite.gz(&["run", &path, "--json"]);
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["tasks"].as_array().map(Vec::len), Some(61));
    assert_eq!(doc["status"], "failed");

    // A small workflow still shows each task.
    let small = workflow_file("small.yaml", &big_failing_yaml(3));
    let (code, out, err) = suite.gz(&["run", &small.display().to_string()]);
    assert_eq!(code, 1);
    assert_eq!(lines_with(&err, " completed ("), 3, "{err}");
    assert_eq!(lines_with(&out, "t1_0"), 1, "{out}");
}

/// The task ids of a `workflow_get` reply, in order.
fn ids_of(doc: &Value) -> Vec<String> {
    doc["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_id"].as_str().expect("task_id").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tasks_of_a_big_workflow_are_read_in_pages() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    // 1,201 tasks: over 1,000, so the ended tasks' data are read from the store.
    let file = workflow_file("paged.yaml", &big_failing_yaml(1_200));
    let id = suite.submit(&file);
    let whole = suite.wait_finished(&id, Duration::from_secs(240)).await;
    let all = ids_of(&whole);
    assert_eq!(all.len(), 1_201);
    assert!(whole.get("next_offset").is_none(), "gz reads every page");

    let (client, _incoming) = suite.hub.client().await;
    let get = |payload: Value| {
        let client = &client;
        async move {
            client
                .request(
                    Target::Type("queue-manager".into()),
                    events::WORKFLOW_GET,
                    payload,
                )
                .await
                .expect("workflow_get")
        }
    };
    // Pages of 500 give the same tasks in the same order, and say where the next starts.
    let mut paged = Vec::new();
    let mut offsets = Vec::new();
    let mut offset = 0;
    loop {
        let page = get(json!({ "workflow_id": id, "offset": offset, "limit": 500 })).await;
        assert_eq!(page["counts"]["total"], 1_201);
        paged.extend(ids_of(&page));
        offsets.push(offset);
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(offsets, [0, 500, 1_000]);
    assert_eq!(paged, all);

    // Only the failed tasks; an offset past the end is an empty page.
    let failed = get(json!({ "workflow_id": id, "status": "failed", "limit": 10 })).await;
    assert_eq!(ids_of(&failed), ["bad"]);
    assert!(failed.get("next_offset").is_none());
    assert_eq!(failed["counts"]["completed"], 1_200);
    let past = get(json!({ "workflow_id": id, "offset": 5_000, "limit": 10 })).await;
    assert!(ids_of(&past).is_empty());
    // A limit is clamped to 1..=10,000; a bad status is a clear error.
    let one = get(json!({ "workflow_id": id, "limit": 0 })).await;
    assert_eq!(ids_of(&one), [all[0].clone()]);
    assert_eq!(one["next_offset"], 1);
    let bad = client
        .request(
            Target::Type("queue-manager".into()),
            events::WORKFLOW_GET,
            json!({ "workflow_id": id, "status": "sideways" }),
        )
        .await
        .expect_err("an unknown status is refused");
    assert_eq!(bad.code.as_str(), "GZ7020", "{bad}");

    // gz reads a workflow in as many pages as it takes (here pages of 300).
    let (code, out, err) = gz_at_with_env(
        &suite.hub.url,
        &[("GLEITZEIT_TASKS_PAGE", "300")],
        &["inspect", "workflow", &id, "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(ids_of(&doc), all);

    // A small workflow, answered from the queue-manager's memory, pages the same way.
    let small = workflow_file("small.yaml", &big_failing_yaml(4));
    let small_id = suite.submit(&small);
    let small_all = ids_of(
        &suite
            .wait_finished(&small_id, Duration::from_secs(60))
            .await,
    );
    let first = get(json!({ "workflow_id": small_id, "limit": 3 })).await;
    assert_eq!(ids_of(&first), small_all[..3]);
    assert_eq!(first["next_offset"], 3);
    let rest = get(json!({ "workflow_id": small_id, "offset": 3, "limit": 3 })).await;
    assert_eq!(ids_of(&rest), small_all[3..]);
    assert!(rest.get("next_offset").is_none());
    client.close().await;
}

/// The events of workflow `id` after `after` (a `workflow_events` catch-up): (seq, event).
async fn logged_events(
    client: &gleitzeit_hub_client::HubClient,
    id: &str,
    after: u64,
) -> Vec<(u64, String)> {
    let reply = client
        .request(
            Target::Type(events::component_types::QUEUE_MANAGER.into()),
            events::WORKFLOW_EVENTS,
            json!({ "workflow_id": id, "after_seq": after }),
        )
        .await
        .expect("workflow_events");
    reply["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().expect("seq"),
                e["event"].as_str().expect("event").to_string(),
            )
        })
        .collect()
}

/// The sum of the samples of `family` in the hub's `GET /metrics` (every component's).
async fn metric_sum(suite: &TestSuite, family: &str) -> f64 {
    suite
        .metrics_text()
        .await
        .lines()
        .filter(|l| l.starts_with(family))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Task events go only to those who watch them: a workflow no one watches publishes none
/// (the queue-manager counts them as unwatched) yet its log keeps every one for a catch-up;
/// a watcher of `summary:<id>` gets the workflow's own events and no task event, while a
/// watcher of `workflow:<id>` that catches up after its `subscribe` has every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_events_go_only_to_those_who_watch_them() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let (client, mut incoming) = suite.hub.client().await;
    let family = "gleitzeit_task_events_unwatched_total";

    // No one watches: no task event is published, every one is logged.
    let quiet = suite.submit(&workflow_file(
        "quiet.yaml",
        &chains_yaml("q", 200, 1, 0.0, None),
    ));
    suite.wait_finished(&quiet, Duration::from_secs(120)).await;
    let logged = logged_events(&client, &quiet, 0).await;
    let tasks = logged
        .iter()
        .filter(|(_, e)| events::is_task_event(e))
        .count();
    assert_eq!(
        tasks, 600,
        "queued, started, completed for each of 200 tasks"
    );
    let seqs: Vec<u64> = logged.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=logged.len() as u64).collect::<Vec<_>>());
    assert_eq!(metric_sum(&suite, family).await, 600.0, "none was sent");

    // Two watchers of one workflow: one of its summary room, one of all its events.
    let (full, mut full_in) = suite.hub.client().await;
    let id = suite.submit(&workflow_file(
        "watched.yaml",
        &chains_yaml("w", 100, 3, 0.01, None),
    ));
    client
        .subscribe(&[rooms::summary(&id)])
        .await
        .expect("join the summary room");
    full.subscribe(&[rooms::workflow(&id)])
        .await
        .expect("join the workflow room");
    let before = logged_events(&full, &id, 0).await;
    let tasks_before = before
        .iter()
        .filter(|(_, e)| events::is_task_event(e))
        .count();
    let mut seen: std::collections::BTreeSet<u64> = before.into_iter().map(|(s, _)| s).collect();
    let collect = |env: gleitzeit_protocol::Envelope| -> Vec<(u64, String)> {
        EventBatch::unpack(env)
            .into_iter()
            .map(|e| (e.payload["seq"].as_u64().expect("seq"), e.event))
            .collect()
    };
    let mut summary_events = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), async {
        let (mut full_done, mut summary_done) = (false, false);
        while !(full_done && summary_done) {
            tokio::select! {
                env = incoming.recv(), if !summary_done => {
                    for (_, event) in collect(env.expect("open")) {
                        summary_done |= event == events::WORKFLOW_COMPLETED;
                        summary_events.push(event);
                    }
                }
                env = full_in.recv(), if !full_done => {
                    for (seq, event) in collect(env.expect("open")) {
                        full_done |= event == events::WORKFLOW_COMPLETED;
                        seen.insert(seq);
                    }
                }
            }
        }
    })
    .await
    .expect("both watchers see the end within 2 minutes");
    assert!(
        summary_events.iter().all(|e| !events::is_task_event(e)),
        "no task event in the summary room: {summary_events:?}"
    );
    let all = logged_events(&full, &id, 0).await;
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "the full watcher has every event (live or caught up)"
    );
    assert_eq!(
        all.iter()
            .filter(|(_, e)| e == events::TASK_COMPLETED)
            .count(),
        300
    );
    // Only task events made before the queue-manager knew of the watcher (so in its first
    // catch-up) went unsent.
    let unsent = metric_sum(&suite, family).await - 600.0;
    assert!(
        unsent <= tasks_before as f64,
        "{unsent} unsent, {tasks_before} before the watcher joined"
    );
}
