//! Several hubs on one Redis acting as one: components on different hubs reach each other,
//! events reach watchers on any hub, and components listing several hubs move to another
//! one when theirs dies, without losing work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gleitzeit_e2e::{
    assert_all_completed_once_recorded, assert_spread, chains_yaml, executions, gz_at, http_json,
    ping, repo_root, service_at, spread_pings, submit_at, task, wait_finished_at, wait_for,
    workflow_file, Proc, RedisServer, TestHub,
};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::replies::EventBatch;
use gleitzeit_protocol::Target;
use serde_json::{json, Value};

/// A temporary data directory for a queue-manager, removed on drop.
struct DataDir(std::path::PathBuf);

impl DataDir {
    fn new(tag: &str, port: u16) -> DataDir {
        let d = std::env::temp_dir().join(format!("gz-mesh-{tag}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        DataDir(d)
    }

    fn arg(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The hub id a hub's component table gives for a component.
async fn hub_of(hub: &TestHub, component: &str) -> Option<String> {
    hub.components()
        .await
        .into_iter()
        .find(|c| c["component_id"] == component)
        .and_then(|c| c["hub_id"].as_str().map(str::to_string))
}

/// `gz run examples/hello.yaml --json` through the hub at `url`; it must succeed.
fn run_hello(url: &str) -> Value {
    let file = repo_root().join("examples/hello.yaml");
    let (code, out, err) = gz_at(url, &["run", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

/// Submits `file` through the hub at `url` and counts the `task_completed` events of it
/// that reach `incoming` live, until its end.
async fn wait_for_task_events(
    url: &str,
    file: &std::path::Path,
    incoming: &mut gleitzeit_hub_client::Incoming,
) -> usize {
    // The watcher's hub shares its rooms every interval and at once when they change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = submit_at(url, file);
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut completed = 0;
        loop {
            let env = incoming.recv().await.expect("client open");
            for e in EventBatch::unpack(env) {
                if e.payload["workflow_id"] != id.as_str() {
                    continue;
                }
                match e.event.as_str() {
                    events::TASK_COMPLETED => completed += 1,
                    events::WORKFLOW_COMPLETED => return completed,
                    _ => {}
                }
            }
        }
    })
    .await
    .expect("the watcher on the other hub sees the workflow complete")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_runs_across_two_hubs_of_one_mesh() {
    let redis = RedisServer::start().await;
    let hub_a = TestHub::start_in_mesh(&redis.url, "hub-a").await;
    let hub_b = TestHub::start_in_mesh(&redis.url, "hub-b").await;
    let data = DataDir::new("two-hubs", hub_a.port);
    let dd = data.arg();
    // Scheduling on one hub, execution on the other.
    let _services: Vec<Proc> = vec![
        hub_a.service("queue-manager", "qm-1", &["--data-dir", &dd]),
        hub_a.service("dependency-resolver", "dr-1", &[]),
        hub_b.service("execution-engine", "ee-1", &[]),
        hub_b.service("python-provider", "py-1", &["--workers", "2"]),
    ];
    let all = ["qm-1", "dr-1", "ee-1", "py-1"];
    hub_a.wait_registered(&all).await;
    hub_b.wait_registered(&all).await;
    assert_eq!(hub_of(&hub_a, "ee-1").await.as_deref(), Some("hub-b"));
    assert_eq!(hub_of(&hub_a, "qm-1").await.as_deref(), Some("hub-a"));
    assert_eq!(hub_of(&hub_b, "qm-1").await.as_deref(), Some("hub-a"));
    let health = http_json(&hub_a.url, "/health").await.unwrap();
    assert_eq!(health["mesh"]["peers"], json!(["hub-b"]), "{health:#}");
    assert_eq!(health["mesh"]["redis_connected"], true);
    // `gz` given several hubs uses the first that answers.
    // Port 1 on loopback: nothing listens there, a connection is refused at once.
    let dead = "http://127.0.0.1:1".to_string();
    let (code, out, err) = gz_at(&format!("{dead},{}", hub_a.url), &["status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("hub hub-a"), "{out}");
    assert!(out.contains("peers [hub-b]"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("ee-1") && l.contains("hub-b")),
        "{out}"
    );

    // A watcher of every event on hub B: the queue-manager on hub A learns it only through
    // the mesh (hub B's snapshot, then `rooms_watched` from hub A; the submission goes
    // through hub B too, so nothing else happens on hub A) and sends the task events.
    let (watcher_b, mut incoming_b) = hub_b.client().await;
    watcher_b
        .subscribe(&[rooms::EVENTS.to_string()])
        .await
        .expect("subscribe on hub B");
    let file = repo_root().join("examples/hello.yaml");
    let quiet_here = wait_for_task_events(&hub_b.url, &file, &mut incoming_b).await;
    assert_eq!(quiet_here, 3, "every task's end reached hub B, once");
    drop(watcher_b);

    // `gz run` on hub B: its submit goes to the queue-manager on hub A, the task events come
    // back through the mesh.
    let doc = run_hello(&hub_b.url);
    assert_eq!(
        task(&doc, "total")["result"]["result"],
        json!({"sum": 6, "first": 3})
    );
    let id = doc["workflow_id"].as_str().unwrap();
    let (code, out, _) = gz_at(&hub_a.url, &["inspect", "workflow", id, "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains("completed"));

    // A watcher on hub A sees the workflow events of a run started through hub B.
    let (client, mut incoming) = hub_a.client().await;
    client
        .subscribe(&[rooms::EVENTS.to_string(), rooms::COMPONENTS.to_string()])
        .await
        .expect("subscribe");
    let second = run_hello(&hub_b.url);
    let second_id = second["workflow_id"].as_str().unwrap().to_string();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let env = incoming.recv().await.expect("client open");
            for env in EventBatch::unpack(env) {
                if env.event == events::WORKFLOW_COMPLETED
                    && env.payload["workflow_id"] == second_id
                {
                    return env;
                }
            }
        }
    })
    .await
    .expect("the watcher on hub A sees the workflow complete");
    assert_eq!(seen.event, events::WORKFLOW_COMPLETED);

    // Hub B stops: hub A forgets its components at once and tells its sockets.
    let mut hub_b = hub_b;
    assert!(hub_b.proc.terminate(Duration::from_secs(10)).is_some());
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let env = incoming.recv().await.expect("client open");
            if env.event == events::COMPONENT_LEFT && env.payload["component_id"] == "ee-1" {
                return env;
            }
        }
    })
    .await
    .expect("component_left for the engine of the stopped hub");
    assert_eq!(left.payload["reason"], "hub_left", "{:?}", left.payload);
    wait_for(Duration::from_secs(5), || async {
        http_json(&hub_a.url, "/health")
            .await
            .is_some_and(|h| h["mesh"]["peers"] == json!([]))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_move_to_another_hub_when_theirs_is_killed_and_nothing_is_lost() {
    let redis = RedisServer::start().await;
    let hub_a = TestHub::start_in_mesh(&redis.url, "hub-a").await;
    let mut hub_b = TestHub::start_in_mesh(&redis.url, "hub-b").await;
    let data = DataDir::new("failover", hub_a.port);
    let dd = data.arg();
    // The engine and the provider know both hubs and prefer hub B: a component starts at
    // the hub its id hashes to (`preferred_index`), so each gets the list in the order that
    // puts hub B there.
    let both = |id: &str| match gleitzeit_hub_client::preferred_index(id, 2) {
        0 => format!("{},{}", hub_b.url, hub_a.url),
        _ => format!("{},{}", hub_a.url, hub_b.url),
    };
    let _services: Vec<Proc> = vec![
        hub_a.service("queue-manager", "qm-1", &["--data-dir", &dd]),
        hub_a.service("dependency-resolver", "dr-1", &[]),
        service_at(&both("ee-1"), "execution-engine", "ee-1", &[]),
        service_at(
            &both("py-1"),
            "python-provider",
            "py-1",
            &["--workers", "2"],
        ),
    ];
    hub_a
        .wait_registered(&["qm-1", "dr-1", "ee-1", "py-1"])
        .await;
    assert_eq!(hub_of(&hub_a, "ee-1").await.as_deref(), Some("hub-b"));

    let log = std::env::temp_dir().join(format!(
        "gz-mesh-failover-log-{}-{}",
        std::process::id(),
        hub_a.port
    ));
    let _ = std::fs::remove_file(&log);
    let yaml = chains_yaml("c", 4, 15, 0.05, Some(&log));
    let file = workflow_file("mesh-failover.yaml", &yaml);
    let id = submit_at(&hub_a.url, &file);
    wait_for(Duration::from_secs(30), || async {
        let (_, out, _) = gz_at(&hub_a.url, &["inspect", "workflow", &id, "--json"]);
        assert!(!out.contains("\"status\":\"failed\""), "{out}");
        executions(&log).len() >= 8
    })
    .await;
    hub_b.proc.kill();

    let doc = wait_finished_at(&hub_a.url, &id, Duration::from_secs(90)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 60);
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    let runs = executions(&log);
    assert_eq!(runs.len(), 60, "every task ran");
    let repeated: usize = runs.values().map(|n| n - 1).sum();
    eprintln!("failover: {repeated} extra executions (tasks in flight when the hub died)");
    // The engine and the provider now live on hub A.
    wait_for(Duration::from_secs(10), || async {
        hub_of(&hub_a, "ee-1").await.as_deref() == Some("hub-a")
            && hub_of(&hub_a, "py-1").await.as_deref() == Some("hub-a")
    })
    .await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_instances_on_every_hub_and_none_is_lost() {
    let redis = RedisServer::start().await;
    let hub_a = TestHub::start_in_mesh(&redis.url, "hub-a").await;
    let hub_b = TestHub::start_in_mesh(&redis.url, "hub-b").await;
    let _procs: Vec<Proc> = vec![
        hub_a.service("dependency-resolver", "resolver-a", &[]),
        hub_b.service("dependency-resolver", "resolver-b1", &[]),
        hub_b.service("dependency-resolver", "resolver-b2", &[]),
    ];
    let ids = ["resolver-a", "resolver-b1", "resolver-b2"];
    hub_a.wait_registered(&ids).await;
    let (client, _incoming) = hub_a.client().await;

    let counts = spread_pings(&client, Target::Type("dependency-resolver".into()), 300).await;
    assert_spread(&counts, &ids, 300, 30);

    // By id, to a component of the other hub.
    let reply = ping(&client, Target::Component("resolver-b2".into()))
        .await
        .expect("answered across hubs");
    assert_eq!(reply["component_id"], "resolver-b2");
    // A component no hub has: a clear error, as with one hub.
    let err = ping(&client, Target::Component("nobody".into()))
        .await
        .expect_err("no route");
    assert_eq!(err.code, "GZ1020");
    let health = http_json(&hub_b.url, "/health").await.unwrap();
    assert!(
        health["mesh"]["relayed_in"].as_u64().unwrap() >= 200,
        "{health:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_keep_routing_their_own_components_while_redis_is_down_and_rejoin_after() {
    let mut redis = RedisServer::start().await;
    let hub_a = TestHub::start_in_mesh(&redis.url, "hub-a").await;
    let hub_b = TestHub::start_in_mesh(&redis.url, "hub-b").await;
    let _procs: Vec<Proc> = vec![
        hub_a.service("dependency-resolver", "resolver-a", &[]),
        hub_b.service("dependency-resolver", "resolver-b", &[]),
    ];
    hub_a.wait_registered(&["resolver-a", "resolver-b"]).await;
    let (client, _incoming) = hub_a.client().await;
    let mesh_of = |url: String| async move {
        http_json(&url, "/health")
            .await
            .map(|h| h["mesh"].clone())
            .unwrap_or(Value::Null)
    };

    redis.stop();
    wait_for(Duration::from_secs(10), || async {
        mesh_of(hub_a.url.clone()).await["redis_connected"] == false
    })
    .await;
    // After the heartbeat timeout hub A no longer counts on hub B's components...
    wait_for(Duration::from_secs(10), || async {
        mesh_of(hub_a.url.clone()).await["peers"] == json!([])
    })
    .await;
    assert!(hub_a
        .components()
        .await
        .iter()
        .all(|c| c["component_id"] != "resolver-b"));
    // ...and still routes to its own.
    let reply = ping(&client, Target::Component("resolver-a".into()))
        .await
        .expect("local routing works without Redis");
    assert_eq!(reply["component_id"], "resolver-a");

    redis.start_again().await;
    wait_for(Duration::from_secs(15), || async {
        let m = mesh_of(hub_a.url.clone()).await;
        m["redis_connected"] == true && m["peers"] == json!(["hub-b"])
    })
    .await;
    let reply = ping(&client, Target::Component("resolver-b".into()))
        .await
        .expect("routing across hubs is back");
    assert_eq!(reply["component_id"], "resolver-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_run_given_two_hubs_follows_its_workflow_to_the_end_when_its_hub_dies() {
    let redis = RedisServer::start().await;
    let hub_a = TestHub::start_in_mesh(&redis.url, "hub-a").await;
    let mut hub_b = TestHub::start_in_mesh(&redis.url, "hub-b").await;
    let data = DataDir::new("gz-failover", hub_a.port);
    let dd = data.arg();
    let _services: Vec<Proc> = vec![
        hub_a.service("queue-manager", "qm-1", &["--data-dir", &dd]),
        hub_a.service("dependency-resolver", "dr-1", &[]),
        hub_a.service("execution-engine", "ee-1", &[]),
        hub_a.service("python-provider", "py-1", &["--workers", "2"]),
    ];
    hub_b
        .wait_registered(&["qm-1", "dr-1", "ee-1", "py-1"])
        .await;
    let yaml = chains_yaml("s", 1, 20, 0.1, None);
    let file = workflow_file("mesh-follow.yaml", &yaml);
    // gz talks to hub B first; hub A is its fallback.
    let mut cmd = std::process::Command::new(gleitzeit_e2e::bin("gz"));
    cmd.env("GLEITZEIT_API_KEY", &hub_a.key)
        .args([
            "--hub-url",
            &format!("{},{}", hub_b.url, hub_a.url),
            "run",
            &file.display().to_string(),
            "--json",
            "--timeout",
            "60",
        ])
        .current_dir(repo_root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let gz = cmd.spawn().expect("gz starts");
    tokio::time::sleep(Duration::from_millis(800)).await;
    hub_b.proc.kill();
    let out = tokio::task::spawn_blocking(move || gz.wait_with_output())
        .await
        .unwrap()
        .expect("gz exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["status"], "completed", "{doc:#}");
    assert_eq!(task(&doc, "s0_19")["result"]["result"], 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_hubs_of_a_mesh_at_random_moments_loses_nothing() {
    let redis = RedisServer::start().await;
    let mesh_args = |id: &'static str| {
        [
            "--redis-url".to_string(),
            redis.url.clone(),
            "--hub-id".into(),
            id.into(),
        ]
    };
    let start_hub = |port: u16, id: &'static str| {
        let args = mesh_args(id);
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            TestHub::start_with(port, &args).await
        }
    };
    // Each hub picks its port once; a killed hub comes back on the same one.
    let mut hubs = [start_hub(0, "hub-a").await, start_hub(0, "hub-b").await];
    let (port_a, port_b) = (hubs[0].port, hubs[1].port);
    let (ab, ba) = (
        format!("{},{}", hubs[0].url, hubs[1].url),
        format!("{},{}", hubs[1].url, hubs[0].url),
    );
    // Every component knows both hubs; they start spread over the two.
    let _services: Vec<Proc> = vec![
        service_at(&ab, "queue-manager", "qm-1", &["--redis-url", &redis.url]),
        service_at(&ba, "dependency-resolver", "dr-1", &[]),
        service_at(&ba, "execution-engine", "ee-1", &[]),
        service_at(&ab, "python-provider", "py-1", &["--workers", "2"]),
    ];
    hubs[0]
        .wait_registered(&["qm-1", "dr-1", "ee-1", "py-1"])
        .await;
    let log = std::env::temp_dir().join(format!(
        "gz-mesh-chaos-{}-{}",
        std::process::id(),
        redis.port
    ));
    let _ = std::fs::remove_file(&log);
    let file = workflow_file(
        "mesh-chaos.yaml",
        &chains_yaml("t", 60, 10, 0.01, Some(&log)),
    );
    let id = submit_at(&hubs[0].url, &file);

    let mut seed = (std::process::id() as u64) ^ 0x2545_f491_4f6c_dd1d;
    let mut kills = Vec::new();
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(200 + (seed >> 33) % 500)).await;
        let done = executions(&log).len();
        if done >= 600 {
            break;
        }
        let victim = ((seed >> 20) % 2) as usize;
        let (port, name) = if victim == 0 {
            (port_a, "hub-a")
        } else {
            (port_b, "hub-b")
        };
        kills.push(format!("{name} after {done} executions"));
        hubs[victim].proc.kill();
        hubs[victim] = start_hub(port, name).await;
    }
    eprintln!("kills: {kills:?}");
    let doc = wait_finished_at(&hubs[0].url, &id, Duration::from_secs(120)).await;
    let (_, extra) = assert_all_completed_once_recorded(&doc, 600, &log);
    eprintln!(
        "executions: 600 tasks, {extra} extra runs across {} hub kills",
        kills.len()
    );
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_with_one_id_are_reported() {
    let redis = RedisServer::start().await;
    let first = TestHub::start_in_mesh(&redis.url, "twin").await;
    let _second = TestHub::start_in_mesh(&redis.url, "twin").await;
    wait_for(Duration::from_secs(10), || async {
        http_json(&first.url, "/health")
            .await
            .and_then(|h| h["mesh"]["id_conflicts"].as_u64())
            .is_some_and(|n| n > 0)
    })
    .await;
    let (code, out, _) = gz_at(&first.url, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("same hub id"), "{out}");
}
