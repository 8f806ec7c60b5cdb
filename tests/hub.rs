//! The hub with real processes: registration, departure detection, routing by type,
//! malformed input, and the official Python Socket.IO client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use gleitzeit_e2e::{assert_spread, bin, repo_root, spread_pings, wait_for, Proc, TestHub};
use gleitzeit_hub_client::{ClientConfig, HubClient};
use gleitzeit_launcher::{process::log_path, Launch};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::Target;
use serde_json::{json, Value};

const SERVICES: &[(&str, &str)] = &[
    ("queue-manager", "queue-manager"),
    ("dependency-resolver", "dependency-resolver"),
    ("execution-engine", "execution-engine"),
    ("ollama-provider", "ollama-provider"),
    ("python-provider", "python-provider"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_registers_with_its_capabilities() {
    let hub = TestHub::start().await;
    let _procs: Vec<Proc> = SERVICES
        .iter()
        .map(|(bin_name, ty)| hub.service(bin_name, &format!("{ty}-t1"), &[]))
        .collect();
    let ids: Vec<String> = SERVICES.iter().map(|(_, ty)| format!("{ty}-t1")).collect();
    hub.wait_registered(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let list = hub.components().await;
    let by_id: HashMap<&str, &Value> = list
        .iter()
        .map(|c| (c["component_id"].as_str().unwrap(), c))
        .collect();
    for (_, ty) in SERVICES {
        let c = by_id[format!("{ty}-t1").as_str()];
        assert_eq!(c["component_type"], *ty);
        assert_eq!(c["health"], "healthy");
        assert!(c["pid"].as_u64().unwrap() > 0);
    }
    let py = by_id["python-provider-t1"];
    assert!(py["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "python/execute"));
    assert!(py["capacity"].as_u64().unwrap() >= 1);
    let llm = by_id["ollama-provider-t1"];
    assert!(llm["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "llm/chat"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_component_is_announced_as_left() {
    let hub = TestHub::start().await;
    let (client, mut incoming) = hub.client().await;
    client
        .subscribe(&[rooms::COMPONENTS.to_string()])
        .await
        .expect("subscribe");
    let mut victim = hub.service("execution-engine", "engine-victim", &[]);
    let _other = hub.service("dependency-resolver", "resolver-stays", &[]);
    hub.wait_registered(&["engine-victim", "resolver-stays"])
        .await;

    let killed_at = Instant::now();
    victim.kill();
    let left = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let env = incoming.recv().await.expect("client open");
            if env.event == events::COMPONENT_LEFT && env.payload["component_id"] == "engine-victim"
            {
                return env;
            }
        }
    })
    .await
    .expect("component_left within the heartbeat timeout");
    assert!(
        killed_at.elapsed() < Duration::from_millis(1500 + 1000),
        "noticed after {:?}",
        killed_at.elapsed()
    );
    assert_eq!(left.payload["component_type"], "execution-engine");
    let list = hub.components().await;
    assert!(list.iter().all(|c| c["component_id"] != "engine-victim"));
    assert!(list.iter().any(|c| c["component_id"] == "resolver-stays"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_type_spread_over_all_instances_and_none_is_lost() {
    let hub = TestHub::start().await;
    let ids = ["resolver-a", "resolver-b", "resolver-c"];
    let _procs: Vec<Proc> = ids
        .iter()
        .map(|id| hub.service("dependency-resolver", id, &[]))
        .collect();
    hub.wait_registered(&ids).await;
    let (client, _incoming) = hub.client().await;

    let counts = spread_pings(&client, Target::Type("dependency-resolver".into()), 300).await;
    assert_spread(&counts, &ids, 300, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_no_component_gets_a_no_route_error() {
    let hub = TestHub::start().await;
    let (client, _incoming) = hub.client().await;
    let err = client
        .request_with_timeout(
            Target::Type("nobody".into()),
            events::PING,
            Value::Null,
            Duration::from_secs(5),
        )
        .await
        .expect_err("no route");
    assert_eq!(err.code, "GZ1020");
    assert!(err.hint.is_some());
    let err = client
        .request_with_timeout(
            Target::Hub,
            "no_such_hub_event",
            json!({}),
            Duration::from_secs(5),
        )
        .await
        .expect_err("unknown event");
    assert_eq!(err.code, "GZ7021");
}

fn python_check(hub: &TestHub, mode: &str, transport: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/python/hub_client_check.py"))
        .args([&hub.url, mode, transport])
        .env("GLEITZEIT_API_KEY", &hub.key);
    cmd
}

async fn wait_exit(mut p: Proc, limit: Duration) -> bool {
    let start = Instant::now();
    while p.running() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_sees_a_component_join_over_both_transports() {
    let hub = TestHub::start().await;
    for (i, transport) in ["websocket", "polling"].iter().enumerate() {
        let marker = std::env::temp_dir().join(format!("gz-py-ready-{}-{}", hub.port, transport));
        let _ = std::fs::remove_file(&marker);
        let name = format!("py-{transport}");
        let log = log_path(&gleitzeit_e2e::bin_dir().join("e2e-logs"), &name);
        let py = Launch::new(name, "python3", log)
            .arg(repo_root().join("tests/python/hub_client_check.py"))
            .args([hub.url.as_str(), "join", transport])
            .env("GLEITZEIT_API_KEY", &hub.key)
            .env("READY_FILE", &marker)
            .spawn()
            .expect("python client starts");
        wait_for(Duration::from_secs(20), || async { marker.exists() }).await;
        let _svc = hub.service("execution-engine", &format!("joiner-{i}"), &[]);
        let log = py.name().to_string();
        assert!(
            wait_exit(py, Duration::from_secs(20)).await,
            "{log} did not see the join"
        );
        let status = std::fs::read_to_string(&marker).unwrap_or_default();
        assert!(
            status.contains(&format!("joined joiner-{i}")),
            "python client reported: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_get_error_replies_and_the_hub_keeps_serving() {
    let hub = TestHub::start().await;
    let out = python_check(&hub, "malformed", "websocket")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for case in [
        "string",
        "number",
        "missing_fields",
        "wrong_types",
        "bad_target",
        "huge_event",
        "unknown_sio_event",
        "bad_register",
    ] {
        assert!(
            stdout.contains(&format!("case {case}: GZ")),
            "no error reply for {case}:\n{stdout}"
        );
    }
    assert!(stdout.contains("still serving: ok"), "{stdout}");
    let health = gleitzeit_e2e::http_json(&hub.url, "/health")
        .await
        .expect("hub alive");
    assert!(health["messages_rejected"].as_u64().unwrap() >= 8);
    assert!(bin("central-hub").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_stops_cleanly_on_sigterm() {
    let mut hub = TestHub::start().await;
    let status = hub
        .proc
        .terminate(Duration::from_secs(10))
        .expect("hub exits after SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// Many clients each sending a request the moment they are connected: every request is
/// answered. (The hub registers a socket's handlers before the client gets its CONNECT; an
/// envelope that arrived before them used to be dropped without a word.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_the_moment_a_client_connects_is_answered() {
    let hub = TestHub::start().await;
    let started = Instant::now();
    let mut asked = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let config = ClientConfig::client(&hub.url).with_api_key(&hub.key);
        asked.spawn(async move {
            let (client, _incoming) = HubClient::connect(config).await.expect("connects");
            let answer = client
                .request_with_timeout(
                    Target::Hub,
                    events::HUB_STATUS,
                    json!({}),
                    Duration::from_secs(10),
                )
                .await;
            client.close().await;
            answer.map(|status| status["status"] == "ok")
        });
    }
    let answers = asked.join_all().await;
    let unanswered: Vec<_> = answers.iter().filter(|a| !matches!(a, Ok(true))).collect();
    assert!(unanswered.is_empty(), "{unanswered:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
