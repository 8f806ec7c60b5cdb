//! `serve` against a real hub started in this process (auth off, a free port): outcomes
//! reach the engine that sent the tasks, held tasks are reported, `ping` is answered while
//! draining, tasks sent while draining never start, and what outlives the grace period is
//! given back as GZ1031; then the provider deregisters and cleans up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use central_hub::{AuthMode, HubConfig};
use gleitzeit_component::{serve, Concurrency, Provider, ProviderInfo, ServeConfig, TaskContext};
use gleitzeit_hub_client::{registration, ClientConfig, HubClient, Incoming};
use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{ExecuteTask, HeldTasks, TaskOutcome, TaskOutcomes};
use gleitzeit_protocol::Target;
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};

const PROVIDER: &str = "test-provider-1";

/// Sleeps `params.ms`; remembers whether it was shut down.
#[derive(Default)]
struct Sleeper {
    shut_down: AtomicBool,
}

impl Provider for Sleeper {
    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            component_type: "test-provider".into(),
            methods: vec!["test/sleep".into()],
            capacity: 4,
            metadata: json!({}),
            concurrency: Concurrency::Runtime,
        }
    }

    async fn execute(&self, task: ExecuteTask, _ctx: TaskContext) -> Result<Value, GzError> {
        let ms = task.params.get("ms").and_then(Value::as_u64).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({ "slept": ms }))
    }

    async fn shutdown(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
    }
}

fn task(id: &str, ms: u64) -> Value {
    json!({ "workflow_id": "wf", "task_id": id, "attempt": 1, "method": "test/sleep", "params": { "ms": ms } })
}

/// The next outcomes sent to the engine (other envelopes are skipped), within `limit`.
async fn outcomes(inbox: &mut Incoming, limit: Duration) -> Vec<TaskOutcome> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let env = tokio::time::timeout_at(deadline, inbox.recv())
            .await
            .expect("outcomes in time")
            .expect("engine connected");
        if env.event == events::TASK_OUTCOMES {
            let batch: TaskOutcomes = env.payload_as().expect("outcomes payload");
            return batch.outcomes;
        }
    }
}

fn code(o: &TaskOutcome) -> &str {
    o.error.as_ref().map(|e| e.code.as_str()).unwrap_or("ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_serves_and_drains_within_the_grace() {
    gleitzeit_runtime::init_tracing(Default::default());
    let dir = std::env::temp_dir().join(format!("gz-component-serve-{}", std::process::id()));
    let hub = central_hub::bind(HubConfig {
        port: 0,
        auth: AuthMode::Off,
        data_dir: Some(dir.clone()),
        ..HubConfig::default()
    })
    .await
    .expect("hub binds");
    let url = format!("http://{}", hub.local_addr());
    let (stop_hub, hub_shutdown) = Shutdown::new();
    let hub_task = tokio::spawn(hub.serve(hub_shutdown));

    let provider = Arc::new(Sleeper::default());
    let (stop_provider, provider_shutdown) = Shutdown::new();
    let config = ServeConfig {
        component_id: Some(PROVIDER.into()),
        grace: Duration::from_millis(500),
        ..ServeConfig::new(url.clone())
    };
    let served = tokio::spawn(serve(provider.clone(), config, provider_shutdown));

    let reg = registration("execution-engine", "ee-test".into(), vec![], 0, json!({}));
    let (engine, mut inbox) = tokio::time::timeout(
        Duration::from_secs(10),
        HubClient::connect(ClientConfig::component(url, reg)),
    )
    .await
    .expect("engine connects in time")
    .expect("engine connects");
    let to_provider = Target::Component(PROVIDER.into());
    let ping = |engine: HubClient| async move {
        engine
            .request_with_timeout(
                Target::Component(PROVIDER.into()),
                events::PING,
                Value::Null,
                Duration::from_secs(1),
            )
            .await
    };
    let mut answered = false;
    for _ in 0..100 {
        if ping(engine.clone()).await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered, "the provider registered");

    engine
        .emit(
            to_provider.clone(),
            events::EXECUTE_TASKS,
            json!({ "tasks": [task("fast", 20), task("slow", 60_000)] }),
        )
        .expect("sent");
    let first = outcomes(&mut inbox, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].task_id.as_str(), code(&first[0])), ("fast", "ok"));
    assert_eq!(first[0].provider_id, PROVIDER);

    // Held tasks are reported every two seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let env = tokio::time::timeout_at(deadline, inbox.recv())
            .await
            .expect("a held report in time")
            .expect("engine connected");
        if env.event == events::TASKS_HELD {
            let held: HeldTasks = env.payload_as().expect("held payload");
            let ids: Vec<&str> = held.tasks.iter().map(|t| t.task_id.as_str()).collect();
            assert_eq!(ids, ["slow"]);
            break;
        }
    }

    stop_provider.fire();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        ping(engine.clone()).await.is_ok(),
        "ping is answered while draining"
    );
    engine
        .emit(
            to_provider,
            events::EXECUTE_TASKS,
            json!({ "tasks": [task("late", 1)] }),
        )
        .expect("sent");
    let mut given_back = Vec::new();
    while given_back.len() < 2 {
        given_back.extend(outcomes(&mut inbox, Duration::from_secs(5)).await);
    }
    given_back.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    let codes: Vec<(&str, &str)> = given_back
        .iter()
        .map(|o| (o.task_id.as_str(), code(o)))
        .collect();
    assert_eq!(codes, [("late", "GZ1031"), ("slow", "GZ1031")]);
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve ends after the drain")
        .expect("serve task")
        .expect("serve ok");
    assert!(provider.shut_down.load(Ordering::SeqCst));
    assert!(
        ping(engine.clone()).await.is_err(),
        "the provider deregistered"
    );

    engine.close().await;
    stop_hub.fire();
    let _ = tokio::time::timeout(Duration::from_secs(5), hub_task).await;
    let _ = std::fs::remove_dir_all(&dir);
}
