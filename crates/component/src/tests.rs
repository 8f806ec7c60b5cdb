//! In-process tests of the provider runtime's task handling: outcomes, capacity,
//! cancellation, panics and the drain (no hub: outcomes are collected from the batcher).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::payloads::{ExecuteTask, TaskOutcome, TaskOutcomes, TaskRef};
use gleitzeit_protocol::{Envelope, Target};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::outcomes::OutcomeSender;
use crate::provider::{Concurrency, Provider, ProviderInfo, TaskContext};
use crate::tasks::{Drained, Tasks};

/// Sleeps `params.ms`, panics on `params.panic`; counts how many run at once.
struct Sleeper {
    concurrency: Concurrency,
    capacity: u32,
    now: AtomicUsize,
    most: AtomicUsize,
    handles_cancel: bool,
}

impl Sleeper {
    fn new(concurrency: Concurrency, capacity: u32) -> Arc<Self> {
        Arc::new(Sleeper {
            concurrency,
            capacity,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            handles_cancel: false,
        })
    }
}

impl Provider for Sleeper {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            component_type: "test-provider".into(),
            methods: vec!["test/sleep".into()],
            capacity: self.capacity,
            metadata: Value::Null,
            concurrency: self.concurrency,
        }
    }

    fn handles_cancel(&self) -> bool {
        self.handles_cancel
    }

    async fn execute(&self, task: ExecuteTask, ctx: TaskContext) -> Result<Value, GzError> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        let ms = task.params.get("ms").and_then(Value::as_u64).unwrap_or(0);
        let sleep = tokio::time::sleep(Duration::from_millis(ms));
        let result = if self.handles_cancel {
            tokio::select! {
                _ = sleep => Ok(json!({ "slept": ms })),
                _ = ctx.cancelled() => Err(GzError::new(
                    gleitzeit_protocol::errors::ErrorCode::Cancelled, "cancelled")),
            }
        } else {
            sleep.await;
            Ok(json!({ "slept": ms }))
        };
        self.now.fetch_sub(1, Ordering::SeqCst);
        if task.params.get("panic") == Some(&json!(true)) {
            panic!("asked to panic");
        }
        result
    }
}

fn task(id: &str, params: Value) -> ExecuteTask {
    ExecuteTask {
        workflow_id: "wf".into(),
        task_id: id.into(),
        attempt: 1,
        method: "test/sleep".into(),
        params,
        timeout_ms: None,
        base_dir: None,
        files: Vec::new(),
    }
}

struct Harness {
    tasks: Tasks<Sleeper>,
    envelopes: mpsc::UnboundedReceiver<Envelope>,
}

fn harness(provider: Arc<Sleeper>) -> Harness {
    let (tx, envelopes) = mpsc::unbounded_channel();
    let (outcomes, _batcher) = OutcomeSender::with_sink(move |e| {
        let _ = tx.send(e);
        Ok(())
    });
    let info = provider.info();
    let tasks = Tasks::new(provider, &info, "p-1".into(), None, outcomes);
    Harness { tasks, envelopes }
}

impl Harness {
    /// Outcomes sent so far, with the engine each went to.
    async fn outcomes(&mut self) -> Vec<(String, TaskOutcome)> {
        self.tasks.flush().await;
        let mut out = Vec::new();
        while let Ok(env) = self.envelopes.try_recv() {
            let Target::Component(ref to) = env.target else {
                panic!("outcomes go to a component");
            };
            let batch: TaskOutcomes = env.payload_as().expect("outcomes");
            out.extend(batch.outcomes.into_iter().map(|o| (to.clone(), o)));
        }
        out.sort_by(|a, b| a.1.task_id.cmp(&b.1.task_id));
        out
    }

    async fn wait_running(&self, n: usize) {
        for _ in 0..500 {
            if self.tasks.running() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("running {} instead of {n}", self.tasks.running());
    }

    async fn wait_held(&self, n: usize) {
        for _ in 0..500 {
            if self.tasks.held() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("held {} instead of {n}", self.tasks.held());
    }
}

fn code(o: &TaskOutcome) -> &str {
    o.error.as_ref().map(|e| e.code.as_str()).unwrap_or("ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_go_to_the_engine_that_sent_the_task() {
    let mut h = harness(Sleeper::new(Concurrency::Provider, 4));
    h.tasks.accept("ee-1", vec![task("a", json!({"ms": 5}))]);
    h.tasks.accept("ee-2", vec![task("b", json!({"ms": 1}))]);
    h.wait_held(0).await;
    let outcomes = h.outcomes().await;
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].0, "ee-1");
    assert_eq!(outcomes[1].0, "ee-2");
    assert_eq!(
        outcomes[0].1.result.as_ref().map(|r| r.to_value()),
        Some(json!({"slept": 5}))
    );
    assert_eq!(outcomes[0].1.provider_id, "p-1");
    assert!(h.tasks.report().iter().all(|(_, held)| held.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_bounds_concurrency_to_capacity_when_asked() {
    let provider = Sleeper::new(Concurrency::Runtime, 2);
    let mut h = harness(provider.clone());
    let batch = (0..6)
        .map(|i| task(&format!("t{i}"), json!({"ms": 30})))
        .collect();
    h.tasks.accept("ee", batch);
    assert_eq!(h.tasks.held(), 6, "every task is accepted and held");
    h.wait_held(0).await;
    assert_eq!(provider.most.load(Ordering::SeqCst), 2);
    assert_eq!(h.outcomes().await.len(), 6);

    let provider = Sleeper::new(Concurrency::Provider, 2);
    let h = harness(provider.clone());
    let batch = (0..6)
        .map(|i| task(&format!("t{i}"), json!({"ms": 30})))
        .collect();
    h.tasks.accept("ee", batch);
    h.wait_held(0).await;
    assert_eq!(
        provider.most.load(Ordering::SeqCst),
        6,
        "the provider queues itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_tasks_stop_and_send_no_outcome() {
    for handles_cancel in [false, true] {
        let mut provider = Sleeper::new(Concurrency::Runtime, 1);
        if let Some(p) = Arc::get_mut(&mut provider) {
            p.handles_cancel = handles_cancel;
        }
        let mut h = harness(provider.clone());
        h.tasks.accept(
            "ee",
            vec![
                task("a", json!({"ms": 10_000})),
                task("b", json!({"ms": 10_000})),
            ],
        );
        h.wait_running(1).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(h.tasks.running(), 1, "one runs, one waits for the permit");
        let refs = ["a", "b"].map(|id| TaskRef {
            workflow_id: "wf".into(),
            task_id: id.into(),
        });
        h.tasks.cancel(refs.to_vec());
        assert_eq!(h.tasks.held(), 0);
        for _ in 0..200 {
            if h.tasks.running() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(h.tasks.running(), 0, "handles_cancel {handles_cancel}");
        assert!(h.outcomes().await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_the_task_with_gz8001() {
    let mut h = harness(Sleeper::new(Concurrency::Provider, 1));
    h.tasks
        .accept("ee", vec![task("a", json!({"panic": true}))]);
    h.wait_held(0).await;
    let outcomes = h.outcomes().await;
    assert_eq!(outcomes.len(), 1);
    assert_eq!(code(&outcomes[0].1), "GZ8001");
    assert_eq!(h.tasks.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_lets_running_tasks_finish_within_the_grace() {
    let mut h = harness(Sleeper::new(Concurrency::Runtime, 2));
    h.tasks.accept(
        "ee",
        vec![
            task("a", json!({"ms": 50})),
            task("b", json!({"ms": 50})),
            task("c", json!({"ms": 50})),
        ],
    );
    h.wait_running(2).await;
    let start = std::time::Instant::now();
    let drained = h.tasks.drain(Duration::from_secs(5)).await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "ends when they do"
    );
    assert_eq!(
        drained,
        Drained {
            not_started: 1,
            unfinished: 0
        }
    );
    let outcomes = h.outcomes().await;
    // Each task waits for a slot in a task of its own: which two of the three got the slots
    // depends on the scheduler, not on the order they came in.
    let mut codes: Vec<&str> = outcomes.iter().map(|(_, o)| code(o)).collect();
    codes.sort_unstable();
    assert_eq!(codes, ["GZ1031", "ok", "ok"]);
    let given_back = outcomes
        .iter()
        .find(|(_, o)| code(o) == "GZ1031")
        .map(|(_, o)| o);
    assert!(given_back
        .and_then(|o| o.error.as_ref())
        .is_some_and(|e| e.retryable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_outlives_the_grace_is_given_back_once() {
    let mut h = harness(Sleeper::new(Concurrency::Provider, 2));
    h.tasks.accept(
        "ee",
        vec![
            task("a", json!({"ms": 100})),
            task("b", json!({"ms": 10_000})),
        ],
    );
    h.wait_running(2).await;
    let start = std::time::Instant::now();
    let drained = h.tasks.drain(Duration::from_millis(400)).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(390) && took < Duration::from_secs(3));
    assert_eq!(
        drained,
        Drained {
            not_started: 0,
            unfinished: 1
        }
    );
    // Tasks handed over while draining wait, and are given back without starting.
    h.tasks.accept("ee-2", vec![task("c", json!({"ms": 1}))]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(h.tasks.running(), 0, "b was stopped, c never started");
    assert_eq!(
        h.tasks.give_back(),
        Drained {
            not_started: 1,
            unfinished: 0
        }
    );
    let outcomes = h.outcomes().await;
    let codes: Vec<(&str, &str, &str)> = outcomes
        .iter()
        .map(|(e, o)| (e.as_str(), o.task_id.as_str(), code(o)))
        .collect();
    assert_eq!(
        codes,
        [
            ("ee", "a", "ok"),
            ("ee", "b", "GZ1031"),
            ("ee-2", "c", "GZ1031")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_attempt_stops_the_older_one() {
    let mut h = harness(Sleeper::new(Concurrency::Provider, 2));
    h.tasks.accept("ee", vec![task("a", json!({"ms": 10_000}))]);
    h.wait_running(1).await;
    let mut again = task("a", json!({"ms": 1}));
    again.attempt = 2;
    h.tasks.accept("ee", vec![again]);
    h.wait_held(0).await;
    h.wait_running(0).await;
    let outcomes = h.outcomes().await;
    assert_eq!(outcomes.len(), 1, "only the newer attempt reports");
    assert_eq!(outcomes[0].1.attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_reports_slots_in_use_and_in_all() {
    use gleitzeit_protocol::metrics::SampleValue;
    let h = harness(Sleeper::new(Concurrency::Runtime, 2));
    let batch = (0..3)
        .map(|i| task(&format!("m{i}"), json!({"ms": 200})))
        .collect();
    h.tasks.accept("ee", batch);
    h.wait_running(2).await;
    let families = h.tasks.metrics();
    let value = |name: &str, state: Option<&str>| {
        let f = families.iter().find(|f| f.name == name).expect(name);
        let s = f
            .samples
            .iter()
            .find(|s| s.labels.get("state").map(String::as_str) == state)
            .expect("sample");
        match s.value {
            SampleValue::Value(v) => v,
            SampleValue::Histogram(_) => panic!("a gauge"),
        }
    };
    assert_eq!(value("gleitzeit_provider_slots", Some("used")), 2.0);
    assert_eq!(value("gleitzeit_provider_slots", Some("total")), 2.0);
    assert_eq!(value("gleitzeit_provider_tasks_held", None), 3.0);
    h.wait_held(0).await;
}
