//! Losing a hub or a queue-manager for a moment costs time, not work, and never a second
//! workflow: services given several hubs spread over them and return to theirs when it is
//! back; `gz run` moves to the next hub at once when its hub dies; a submit waits for a
//! queue-manager that is briefly away; a submission's idempotency key makes a repeated
//! submit answer the first workflow; services log one JSON object per line on request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gleitzeit_e2e::{
    assert_all_completed_once_recorded, chains_yaml, executions, gz_at, gz_at_with_env, repo_root,
    service_at, submit_at, temp_path, wait_finished_at, wait_for, workflow_file, Proc, RedisServer,
    TestHub,
};
use gleitzeit_hub_client::preferred_index;
use gleitzeit_launcher::process::Sig;
use gleitzeit_protocol::events;
use gleitzeit_protocol::Target;
use serde_json::{json, Value};

/// A component id starting with `prefix` that prefers hub number `hub` of `hubs`.
fn id_preferring(prefix: &str, hub: usize, hubs: usize) -> String {
    (0..1000)
        .map(|n| format!("{prefix}-{n}"))
        .find(|id| preferred_index(id, hubs) == hub)
        .expect("some id hashes to every hub")
}

/// The hub id each component sits on, as the hub at `hub` lists them.
async fn placement(hub: &TestHub) -> Vec<(String, String)> {
    hub.components()
        .await
        .into_iter()
        .map(|c| {
            (
                c["component_id"].as_str().unwrap_or_default().to_string(),
                c["hub_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Waits until every `(component, hub id)` pair is what the hub at `hub` lists.
async fn wait_placed(hub: &TestHub, want: &[(String, &str)], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = placement(hub).await;
        let placed = want
            .iter()
            .all(|(id, h)| now.iter().any(|(i, on)| i == id && on == h));
        if placed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "components not placed as {want:?} within {limit:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a hub of the mesh on `redis` called `id` (on `port`, 0 for any) with `extra` flags.
async fn mesh_hub(redis: &RedisServer, id: &str, port: u16, extra: &[&str]) -> TestHub {
    let mut flags = vec!["--redis-url", redis.url.as_str(), "--hub-id", id];
    flags.extend_from_slice(extra);
    TestHub::start_with(port, &flags).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_given_both_hubs_spread_over_them_and_return_to_theirs() {
    let redis = RedisServer::start().await;
    let hub_a = mesh_hub(&redis, "hub-a", 0, &[]).await;
    let mut hub_b = mesh_hub(&redis, "hub-b", 0, &[]).await;
    let both = format!("{},{}", hub_a.url, hub_b.url);
    let qm = id_preferring("qm", 0, 2);
    let dr = id_preferring("dr", 1, 2);
    let ee = id_preferring("ee", 0, 2);
    let py = id_preferring("py", 1, 2);
    let data = temp_path("failover-spread");
    let dd = data.display().to_string();
    let _services: Vec<Proc> = vec![
        service_at(&both, "queue-manager", &qm, &["--data-dir", &dd]),
        service_at(&both, "dependency-resolver", &dr, &[]),
        service_at(&both, "execution-engine", &ee, &[]),
        service_at(&both, "python-provider", &py, &["--workers", "1"]),
    ];
    let home = [
        (qm.clone(), "hub-a"),
        (dr.clone(), "hub-b"),
        (ee.clone(), "hub-a"),
        (py.clone(), "hub-b"),
    ];
    wait_placed(&hub_a, &home, Duration::from_secs(20)).await;
    eprintln!("spread: {:?}", placement(&hub_a).await);

    // Hub B dies: its components move to hub A.
    let port_b = hub_b.port;
    hub_b.proc.kill();
    let on_a: Vec<(String, &str)> = home.iter().map(|(id, _)| (id.clone(), "hub-a")).collect();
    wait_placed(&hub_a, &on_a, Duration::from_secs(20)).await;

    // Hub B comes back on its port while a workflow runs: its components return to it only
    // once idle (after the workflow), and no task runs twice.
    let log = temp_path("failover-spread-log");
    let file = workflow_file(
        "failover-spread.yaml",
        &chains_yaml("r", 2, 25, 0.2, Some(&log)),
    );
    let id = submit_at(&hub_a.url, &file);
    wait_for(Duration::from_secs(20), || async {
        executions(&log).len() >= 2
    })
    .await;
    let back = Instant::now();
    let hub_b = mesh_hub(&redis, "hub-b", port_b, &[]).await;
    wait_placed(&hub_a, &home, Duration::from_secs(60)).await;
    let moved_ms = now_ms();
    eprintln!(
        "rebalanced to the returned hub {:.1}s after it was back",
        back.elapsed().as_secs_f64()
    );
    let doc = wait_finished_at(&hub_b.url, &id, Duration::from_secs(30)).await;
    let (twice, _) = assert_all_completed_once_recorded(&doc, 50, &log);
    assert_eq!(twice, 0, "a task ran twice");
    let finished_ms = doc["workflow"]["finished_at"].as_u64().unwrap();
    assert!(
        moved_ms >= finished_ms,
        "components moved {} ms before the workflow finished",
        finished_ms - moved_ms
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(&data);
}

/// Milliseconds since the Unix epoch (the store's clock).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `gz run` through hub A of a mesh while hub A dies mid-run. Frozen with SIGSTOP first,
/// which is what a killed container or a lost host looks like to its peers (the connection
/// stays open, nothing answers), then killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_run_through_a_dead_hub_continues_on_the_next_at_once() {
    let redis = RedisServer::start().await;
    // Components notice a silent hub after three heartbeats of 1 s; the other hub forgets
    // it after 3 s.
    let beat = ["--heartbeat-interval", "1", "--heartbeat-timeout", "3"];
    let mut hub_a = mesh_hub(&redis, "hub-a", 0, &beat).await;
    let hub_b = mesh_hub(&redis, "hub-b", 0, &beat).await;
    let both = format!("{},{}", hub_a.url, hub_b.url);
    // The provider sits on the hub that dies (and `gz run` is connected through it).
    let qm = id_preferring("qm", 1, 2);
    let ee = id_preferring("ee", 1, 2);
    let py = id_preferring("py", 0, 2);
    let data = temp_path("failover-run");
    let dd = data.display().to_string();
    let _services: Vec<Proc> = vec![
        service_at(&both, "queue-manager", &qm, &["--data-dir", &dd]),
        service_at(&both, "dependency-resolver", "dr-run", &[]),
        service_at(&both, "execution-engine", &ee, &[]),
        service_at(&both, "python-provider", &py, &["--workers", "2"]),
    ];
    hub_a
        .wait_registered(&[qm.as_str(), "dr-run", ee.as_str(), py.as_str()])
        .await;

    let log = temp_path("failover-run-log");
    let yaml = chains_yaml("k", 3, 12, 0.2, Some(&log));
    let file = workflow_file("failover-run.yaml", &yaml);
    let file_arg = file.display().to_string();
    let both_for_gz = both.clone();
    let run = tokio::task::spawn_blocking(move || {
        let (code, out, err) = gz_at_with_env(
            &both_for_gz,
            &[("GLEITZEIT_LOG_LEVEL", "info")],
            &["run", &file_arg, "--json"],
        );
        (code, out, err, Instant::now(), std::time::SystemTime::now())
    });
    wait_for(Duration::from_secs(30), || async {
        executions(&log).len() >= 6
    })
    .await;
    let died = Instant::now();
    hub_a.proc.signal(Sig::Stop);
    eprintln!("hub A frozen at {:?}", std::time::SystemTime::now());
    let outcome = tokio::time::timeout(Duration::from_secs(60), run).await;
    hub_a.proc.kill();
    let (code, out, err, ended, ended_wall) = outcome
        .expect("gz run returned within a minute")
        .expect("gz ran");
    let after = ended.duration_since(died);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["status"], "completed", "{doc:#}");
    assert_eq!(executions(&log).len(), 36, "every task ran");
    // How long gz run took to notice the end of the workflow it followed.
    let id = doc["workflow_id"].as_str().expect("workflow id");
    let (_, inspect, _) = gz_at(&hub_b.url, &["inspect", "workflow", id, "--json"]);
    let inspected: Value = serde_json::from_str(&inspect).expect("gz inspect --json");
    let finished_ms = inspected["workflow"]["finished_at"]
        .as_u64()
        .expect("finished_at");
    let ended_ms = ended_wall
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let lag = Duration::from_millis(ended_ms.saturating_sub(finished_ms));
    eprintln!(
        "gz run returned {:.1}s after its hub died, {:.1}s after the workflow finished (request timeout 30 s)",
        after.as_secs_f64(),
        lag.as_secs_f64()
    );
    assert!(
        after < Duration::from_secs(15),
        "gz run waited {after:?} after its hub died: {err}"
    );
    assert!(
        lag < Duration::from_secs(5),
        "gz run noticed the end {lag:?} late: {err}"
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_waits_for_a_briefly_missing_queue_manager_and_keys_make_it_once() {
    let hub = TestHub::start_with(0, &["--log-format", "json"]).await;
    let data = temp_path("failover-qm");
    let dd = data.display().to_string();
    let qm_args = ["--data-dir", dd.as_str(), "--log-format", "json"];
    let mut qm = hub.service("queue-manager", "qm-away", &qm_args);
    let others: Vec<Proc> = vec![
        hub.service("dependency-resolver", "dr-away", &["--log-format", "json"]),
        hub.service("execution-engine", "ee-away", &["--log-format", "json"]),
        hub.service(
            "python-provider",
            "py-away",
            &["--workers", "1", "--log-format", "json"],
        ),
    ];
    hub.wait_registered(&["qm-away", "dr-away", "ee-away", "py-away"])
        .await;

    // (c) The only queue-manager is gone for three seconds: `gz submit` waits for it.
    qm.kill();
    wait_for(Duration::from_secs(10), || async {
        !hub.components()
            .await
            .iter()
            .any(|c| c["component_id"] == "qm-away")
    })
    .await;
    let file = repo_root().join("examples/hello.yaml");
    let (url, arg) = (hub.url.clone(), file.display().to_string());
    let started = Instant::now();
    let submit = tokio::task::spawn_blocking(move || gz_at(&url, &["submit", &arg, "--json"]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _qm = hub.service("queue-manager", "qm-away", &qm_args);
    let (code, out, err) = submit.await.expect("gz submit ran");
    let waited = started.elapsed();
    eprintln!(
        "gz submit waited {:.1}s for the queue-manager",
        waited.as_secs_f64()
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        waited >= Duration::from_millis(2500),
        "answered before the queue-manager was back"
    );
    let id = serde_json::from_str::<Value>(&out).unwrap()["workflow_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, list, _) = gz_at(&hub.url, &["list", "--json"]);
    let listed: Value = serde_json::from_str(&list).expect("gz list --json");
    let ids: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|w| w["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [id.as_str()], "exactly one workflow: {list}");

    // (d) The same key twice: one workflow, the same id; the key with another spec: GZ3031.
    let (client, _incoming) = hub.client().await;
    let qm_target = Target::Type("queue-manager".into());
    let spec = |name: &str| {
        json!({ "name": name, "tasks": [{ "id": "one", "method": "python/execute",
                "parameters": { "code": "result = 1" } }] })
    };
    let submit_with = |workflow_id: &str, name: &str| json!({ "spec": spec(name), "workflow_id": workflow_id, "idempotency_key": "key-0001" });
    let first = client
        .request(
            qm_target.clone(),
            events::WORKFLOW_SUBMIT,
            submit_with("wf-key-1", "same"),
        )
        .await
        .expect("first submit");
    let again = client
        .request(
            qm_target.clone(),
            events::WORKFLOW_SUBMIT,
            submit_with("wf-key-2", "same"),
        )
        .await
        .expect("repeated submit");
    assert_eq!(first["workflow_id"], "wf-key-1");
    assert_eq!(again["workflow_id"], "wf-key-1", "{again}");
    assert_eq!(again["total_tasks"], 1);
    let conflict = client
        .request(
            qm_target.clone(),
            events::WORKFLOW_SUBMIT,
            submit_with("wf-key-3", "other"),
        )
        .await
        .expect_err("another spec under the key");
    assert_eq!(conflict.code, "GZ3031", "{conflict:?}");
    let (_, list, _) = gz_at(&hub.url, &["list", "--json"]);
    let listed: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{list}");
    client.close().await;

    // (e) --log-format json: every line of these logs is one JSON object.
    let logs: Vec<&std::path::Path> = std::iter::once(hub.proc.log())
        .chain(std::iter::once(qm.log()))
        .chain(others.iter().map(|p| p.log()))
        .collect();
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap();
        let mut lines = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", log.display()));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
            lines += 1;
        }
        assert!(lines > 0, "{} is empty", log.display());
    }
    let _ = std::fs::remove_dir_all(&data);
}

/// A submit while the queue-manager's Redis restarts (the report: both queue-managers were
/// unhealthy for ~15 s and `gz run` failed with GZ1020) waits for it and makes one workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_during_a_redis_restart_waits_and_makes_one_workflow() {
    let mut redis = RedisServer::start().await;
    let hub = TestHub::start().await;
    let data = temp_path("failover-redis");
    let dd = data.display().to_string();
    let _services: Vec<Proc> = vec![
        hub.service(
            "queue-manager",
            "qm-redis",
            &["--redis-url", &redis.url, "--data-dir", &dd],
        ),
        hub.service("dependency-resolver", "dr-redis", &[]),
        hub.service("execution-engine", "ee-redis", &[]),
        hub.service("python-provider", "py-redis", &["--workers", "1"]),
    ];
    hub.wait_registered(&["qm-redis", "dr-redis", "ee-redis", "py-redis"])
        .await;

    redis.stop();
    let file = repo_root().join("examples/hello.yaml");
    let (url, arg) = (hub.url.clone(), file.display().to_string());
    let started = Instant::now();
    let run = tokio::task::spawn_blocking(move || gz_at(&url, &["run", &arg, "--json"]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.start_again().await;
    let (code, out, err) = run.await.expect("gz run ran");
    eprintln!(
        "gz run through a Redis restart took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 0, "{out}{err}");
    let (_, list, _) = gz_at(&hub.url, &["list", "--json"]);
    let listed: Value = serde_json::from_str(&list).expect("gz list --json");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{list}");
    let _ = std::fs::remove_dir_all(&data);
}
