//! The queue-manager on the Redis store: same behaviour as the embedded store, recovery
//! after restarts, and a Redis restart in the middle of a run (`appendonly yes`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use gleitzeit_e2e::{
    assert_all_completed_once_recorded, chains_yaml, executions, repo_root, task, wait_for,
    workflow_file, Proc, RedisServer, Sig, SuiteOptions, TestSuite,
};
use serde_json::{json, Value};

fn options(redis: &RedisServer) -> SuiteOptions {
    SuiteOptions {
        redis_url: Some(redis.url.clone()),
        ..SuiteOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_run_on_redis_and_their_results_survive_restarting_every_service() {
    let redis = RedisServer::start().await;
    let mut suite = TestSuite::start(options(&redis)).await;
    let (code, doc) = suite.run_json(&repo_root().join("examples/hello.yaml"));
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(
        task(&doc, "total")["result"]["result"],
        json!({"sum": 6, "first": 3})
    );
    let (code, doc_fail) = suite.run_json(&repo_root().join("examples/failure.yaml"));
    assert_eq!(code, 1);
    assert_eq!(task(&doc_fail, "after_broken")["status"], "skipped");
    let id = doc["workflow_id"].as_str().unwrap().to_string();

    let (_, out, _) = suite.gz(&["status", "--json"]);
    let status: Value = serde_json::from_str(&out).unwrap();
    wait_for(Duration::from_secs(10), || async {
        let (_, out, _) = suite.gz(&["status", "--json"]);
        serde_json::from_str::<Value>(&out)
            .is_ok_and(|s| s["stores"][0]["kind"] == "redis" && s["stores"][0]["healthy"] == true)
    })
    .await;
    assert!(status["components"].as_array().is_some());

    suite.kill_services();
    suite.start_services(&options(&redis)).await;
    let (code, out, err) = suite.gz(&["inspect", "workflow", &id, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["workflow"]["status"], "completed");
    assert_eq!(
        task(&again, "report")["result"]["result"],
        "sum is 6, label demo"
    );
    let (_, list, _) = suite.gz(&["list", "--json"]);
    assert!(list.contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_queue_manager_resumes_from_redis_and_every_task_has_one_result() {
    let redis = RedisServer::start().await;
    let mut suite = TestSuite::start(options(&redis)).await;
    let log = std::env::temp_dir().join(format!(
        "gz-redis-runs-{}-{}",
        std::process::id(),
        redis.port
    ));
    let _ = std::fs::remove_file(&log);
    let id = suite.submit(&workflow_file(
        "chains.yaml",
        &chains_yaml("t", 20, 10, 0.01, Some(&log)),
    ));
    wait_for(Duration::from_secs(30), || async {
        executions(&log).len() >= 40
    })
    .await;
    suite.services[0].kill();
    let _qm = suite
        .hub
        .service("queue-manager", "qm-2", &["--redis-url", &redis.url]);
    let doc = suite.wait_finished(&id, Duration::from_secs(60)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    assert_eq!(doc["tasks"].as_array().unwrap().len(), 200);
    assert!(doc["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["status"] == "completed"));
    let runs = executions(&log);
    assert_eq!(runs.len(), 200);
    let twice = runs.values().filter(|n| **n > 1).count();
    eprintln!("tasks run more than once (in flight at the kill): {twice}");
    assert!(
        twice <= 20,
        "only tasks in flight at the kill may run twice ({twice})"
    );
    let _ = std::fs::remove_file(log);
}

/// 20 chains of 10 quick tasks (200), submitted and under way (40 ran); each execution is
/// logged to the returned file.
async fn chains_under_way(suite: &TestSuite, name: &str, port: u16) -> (String, PathBuf) {
    let log = std::env::temp_dir().join(format!("gz-redis-{name}-{}-{port}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let id = suite.submit(&workflow_file(
        "chains.yaml",
        &chains_yaml("t", 20, 10, 0.01, Some(&log)),
    ));
    wait_for(Duration::from_secs(30), || async {
        executions(&log).len() >= 40
    })
    .await;
    (id, log)
}

/// The 200 tasks of [`chains_under_way`] completed, each executed once.
async fn chains_completed_once(suite: &TestSuite, id: &str, log: PathBuf) {
    let doc = suite.wait_finished(id, Duration::from_secs(90)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 200);
    assert!(tasks.iter().all(|t| t["status"] == "completed"), "{doc:#}");
    assert_eq!(executions(&log).len(), 200);
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_loses_nothing() {
    let mut redis = RedisServer::start().await;
    let suite = TestSuite::start(options(&redis)).await;
    let (id, log) = chains_under_way(&suite, "restart", redis.port).await;
    redis.restart(Duration::from_millis(1500)).await;
    chains_completed_once(&suite, &id, log).await;
}

/// Redis frozen (SIGSTOP) for 20 s mid-run, longer than the hub's 15 s heartbeat timeout:
/// the queue-manager's store calls wait off the thread that carries its hub connection,
/// so it keeps its heartbeats, no component is dropped, and the workflow completes with
/// every task recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_frozen_for_20_s_mid_run_drops_no_component_and_loses_nothing() {
    let mut redis = RedisServer::start().await;
    let suite = TestSuite::start(options(&redis)).await;
    let (id, log) = chains_under_way(&suite, "freeze", redis.port).await;
    let ids = |list: Vec<Value>| -> Vec<String> {
        let mut ids: Vec<String> = list
            .iter()
            .filter(|c| c["health"] != "unhealthy")
            .filter_map(|c| c["component_id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    };
    let before = ids(suite.hub.components().await);
    assert!(before.iter().any(|c| c == "qm-1"), "{before:?}");
    redis.process().signal(Sig::Stop);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = ids(suite.hub.components().await);
    redis.process().signal(Sig::Cont);
    assert_eq!(
        during, before,
        "no component lost or unhealthy while Redis was frozen"
    );
    chains_completed_once(&suite, &id, log).await;
    assert_eq!(ids(suite.hub.components().await), before);
}

/// Fault injection: while a workflow of 1,000 tasks (chains and fan-ins) runs on the Redis
/// store, the queue-manager, the execution-engine, the python-provider and the hub are
/// SIGKILLed and restarted, one at a time, several times. The workflow completes, every task
/// has exactly one recorded result, and executions per task are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_services_at_random_moments_loses_nothing() {
    let redis = RedisServer::start().await;
    let mut suite = TestSuite::start(options(&redis)).await;
    let log = std::env::temp_dir().join(format!("gz-fault-{}-{}", std::process::id(), redis.port));
    let _ = std::fs::remove_file(&log);
    // 100 chains of 9 tasks, and 100 fan-in tasks each joining two chains' ends: 1,000 tasks.
    let mut yaml = chains_yaml("t", 100, 9, 0.01, Some(&log));
    for j in 0..100 {
        let (a, b) = (j, (j + 1) % 100);
        yaml.push_str(&format!(
            "  - id: join{j}\n    method: python/execute\n    dependencies: [t{a}_8, t{b}_8]\n    parameters: {{ code: \"open('{}', 'a').write('join{j}\\\\n')\\nresult = 1\" }}\n",
            log.display()
        ));
    }
    let id = suite.submit(&workflow_file("fault.yaml", &yaml));
    let names = [
        "queue-manager",
        "execution-engine",
        "python-provider",
        "hub",
    ];
    let mut seed = (std::process::id() as u64) ^ 0x9e37_79b9_7f4a_7c15;
    let mut kills = Vec::new();
    for round in 0..6 {
        // A pseudo-random pause (150..650 ms) and victim.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pause = 150 + (seed >> 33) % 500;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = names[((seed >> 20) % 4) as usize];
        let done = executions(&log).len();
        if done >= 1000 {
            break;
        }
        kills.push(format!("{victim} after {done} executions"));
        match victim {
            "hub" => {
                let port = suite.hub.port;
                suite.hub.proc.kill();
                suite.hub = gleitzeit_e2e::TestHub::start_on(port).await;
            }
            "queue-manager" => {
                suite.services[0].kill();
                suite.services[0] = suite.hub.service(
                    "queue-manager",
                    &format!("qm-r{round}"),
                    &["--redis-url", &redis.url],
                );
            }
            "execution-engine" => {
                suite.services[2].kill();
                suite.services[2] =
                    suite
                        .hub
                        .service("execution-engine", &format!("ee-r{round}"), &[]);
            }
            _ => {
                suite.services[3].kill();
                suite.services[3] = suite.hub.service(
                    "python-provider",
                    &format!("py-r{round}"),
                    &["--workers", "2"],
                );
            }
        }
    }
    eprintln!("kills: {kills:?}");
    let doc = suite.wait_finished(&id, Duration::from_secs(120)).await;
    let (twice, extra) = assert_all_completed_once_recorded(&doc, 1000, &log);
    eprintln!(
        "executions: 1000 tasks, {twice} ran more than once ({extra} extra runs) across {} kills",
        kills.len()
    );
    let _ = std::fs::remove_file(log);
}

fn owner_of(redis: &RedisServer, workflow: &str) -> String {
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "GET",
            &format!("gz:owner:{workflow}"),
        ])
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Starts `qm-2` on the same Redis and `ee-2` beside the suite's own.
fn second_queue_manager_and_engine(suite: &TestSuite, redis: &RedisServer) -> Vec<Proc> {
    vec![
        suite
            .hub
            .service("queue-manager", "qm-2", &["--redis-url", &redis.url]),
        suite.hub.service("execution-engine", "ee-2", &[]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_queue_managers_and_two_engines_share_one_redis_without_running_a_task_twice() {
    let redis = RedisServer::start().await;
    let suite = TestSuite::start(options(&redis)).await;
    let _more = second_queue_manager_and_engine(&suite, &redis);
    suite.hub.wait_registered(&["qm-2", "ee-2"]).await;
    let log = std::env::temp_dir().join(format!("gz-two-qm-{}-{}", std::process::id(), redis.port));
    let _ = std::fs::remove_file(&log);
    let mut ids = Vec::new();
    for w in 0..4 {
        let yaml = chains_yaml(&format!("w{w}t"), 15, 10, 0.01, Some(&log));
        ids.push(suite.submit(&workflow_file(&format!("part{w}.yaml"), &yaml)));
    }
    let owners: std::collections::HashSet<String> =
        ids.iter().map(|id| owner_of(&redis, id)).collect();
    assert!(
        owners.contains("qm-1") && owners.contains("qm-2"),
        "both queue-managers own workflows: {owners:?}"
    );
    for id in &ids {
        let doc = suite.wait_finished(id, Duration::from_secs(90)).await;
        assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    }
    let runs = executions(&log);
    assert_eq!(runs.len(), 600);
    assert!(runs.values().all(|n| *n == 1), "a task ran twice");
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_queue_managers_and_two_engines_finish_one_big_workflow_running_each_task_once() {
    let redis = RedisServer::start().await;
    let suite = TestSuite::start(options(&redis)).await;
    let _more = second_queue_manager_and_engine(&suite, &redis);
    let _py2 = suite
        .hub
        .service("python-provider", "py-2", &["--workers", "2"]);
    suite.hub.wait_registered(&["qm-2", "ee-2", "py-2"]).await;
    let log =
        std::env::temp_dir().join(format!("gz-one-big-{}-{}", std::process::id(), redis.port));
    let _ = std::fs::remove_file(&log);
    let id = suite.submit(&workflow_file(
        "one-big.yaml",
        &chains_yaml("t", 25, 24, 0.01, Some(&log)),
    ));
    let owner = owner_of(&redis, &id);
    assert!(owner == "qm-1" || owner == "qm-2", "owner {owner:?}");
    let doc = suite.wait_finished(&id, Duration::from_secs(120)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let tasks = doc["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 600);
    // Both providers (reached through both engines) did part of the work.
    let providers: std::collections::HashSet<&str> = tasks
        .iter()
        .filter_map(|t| t["provider_id"].as_str())
        .collect();
    assert_eq!(providers.len(), 2, "{providers:?}");
    let runs = executions(&log);
    assert_eq!(runs.len(), 600);
    assert!(runs.values().all(|n| *n == 1), "a task ran twice");
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_queue_manager_takes_over_the_workflow_of_one_that_died() {
    let redis = RedisServer::start().await;
    let mut suite = TestSuite::start(options(&redis)).await;
    let _qm2 = suite
        .hub
        .service("queue-manager", "qm-2", &["--redis-url", &redis.url]);
    suite.hub.wait_registered(&["qm-2"]).await;
    let log =
        std::env::temp_dir().join(format!("gz-takeover-{}-{}", std::process::id(), redis.port));
    let _ = std::fs::remove_file(&log);
    let id = suite.submit(&workflow_file(
        "takeover.yaml",
        &chains_yaml("t", 10, 10, 0.01, Some(&log)),
    ));
    wait_for(Duration::from_secs(30), || async {
        executions(&log).len() >= 20
    })
    .await;
    let owner = owner_of(&redis, &id);
    assert!(owner == "qm-1" || owner == "qm-2", "owner {owner:?}");
    if owner == "qm-1" {
        suite.services[0].kill();
    } else {
        drop(_qm2);
    }
    let doc = suite.wait_finished(&id, Duration::from_secs(60)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    assert_eq!(executions(&log).len(), 100);
    assert_ne!(owner_of(&redis, &id), owner, "the survivor took it over");
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_the_owner_whichever_queue_manager_gets_it() {
    let redis = RedisServer::start().await;
    let suite = TestSuite::start(options(&redis)).await;
    let _qm2 = suite
        .hub
        .service("queue-manager", "qm-2", &["--redis-url", &redis.url]);
    suite.hub.wait_registered(&["qm-2"]).await;
    let yaml = "name: long\ntasks:\n  - id: wait\n    method: python/execute\n    parameters: { code: \"import time\\ntime.sleep(30)\" }\n";
    let ids: Vec<String> = (0..4)
        .map(|i| suite.submit(&workflow_file(&format!("long{i}.yaml"), yaml)))
        .collect();
    let owners: std::collections::HashSet<String> =
        ids.iter().map(|id| owner_of(&redis, id)).collect();
    assert_eq!(owners.len(), 2, "both queue-managers own some: {owners:?}");
    for id in &ids {
        let (code, out, err) = suite.gz(&["cancel", id, "--json"]);
        assert_eq!(code, 0, "{out}{err}");
        let reply: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(reply["cancelled"], true, "{reply}");
    }
    for id in &ids {
        let doc = suite.wait_finished(id, Duration::from_secs(20)).await;
        assert_eq!(doc["workflow"]["status"], "cancelled");
    }
}
