//! End-to-end test support. Two ways to run a suite:
//!
//! - [`InProcessSuite`] ([`in_process`]): the hub and every service in the test's own
//!   process on `127.0.0.1:0`, through their `bind`/`run(config, shutdown)` entry points,
//!   with authentication on. Fast; for workflow behaviour that kills nothing.
//! - [`TestSuite`], [`TestHub`] and friends ([`processes`]): the real binaries as child
//!   processes started through `gleitzeit-launcher`, for tests that SIGKILL, SIGSTOP or
//!   restart a process, or check a binary's own behaviour (flags, exit codes, logs).
//!
//! Both are torn down when dropped, even when a test fails. Waiting is polling with a
//! deadline ([`wait_for`]), never a fixed sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod in_process;
pub mod netns;
pub mod processes;

pub use gleitzeit_launcher::{Process as Proc, Sig};
pub use in_process::InProcessSuite;
pub use processes::{launch, service_at, LlmSim, RedisServer, SuiteOptions, TestHub, TestSuite};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::HubClient;

/// The directory holding the built binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    gleitzeit_launcher::bin_dir()
}

/// Path of one of the workspace's binaries; panics with the build command when missing.
pub fn bin(name: &str) -> PathBuf {
    gleitzeit_launcher::binary(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A fresh, empty temp folder path unique to this test process: `gz-<what>-<pid>-<n>`.
pub fn temp_path(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("gz-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// The admin key of each test hub (by URL) and of each mesh Redis (by Redis URL).
static KEYS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// The CA file (PEM) that signed each TLS test hub's certificate, by hub URL.
static CAS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());

/// The CA of the TLS hub at `hub_url` (the first of a comma-separated list that has one):
/// every process started through this module gets it as `GLEITZEIT_TLS_CA`.
pub fn ca_of(hub_url: &str) -> Option<PathBuf> {
    let cas = CAS.lock().unwrap();
    hub_url
        .split(',')
        .find_map(|url| cas.get(url.trim()).cloned())
}

/// The SERVICE key the services of the hub at each URL present, when it is not the admin
/// key ([`InProcessSuite`] keeps its tests' user key and its services' key apart).
static SERVICE_KEYS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Remembers the key every client of `hub_url` started here presents (`gz`, HTTP waits).
pub fn remember_key(hub_url: &str, key: &str) {
    KEYS.lock()
        .unwrap()
        .insert(hub_url.to_string(), key.to_string());
}

/// Remembers the key every service started here for `hub_url` presents.
pub fn remember_service_key(hub_url: &str, key: &str) {
    SERVICE_KEYS
        .lock()
        .unwrap()
        .insert(hub_url.to_string(), key.to_string());
}

/// Remembers the CA (PEM file) that signed the TLS hub at `hub_url`.
pub fn remember_ca(hub_url: &str, ca: &Path) {
    CAS.lock()
        .unwrap()
        .insert(hub_url.to_string(), ca.to_path_buf());
}

/// The key a service of the hub at `hub_url` presents: its service key, else the admin key.
pub fn service_key_of(hub_url: &str) -> Option<String> {
    let keys = SERVICE_KEYS.lock().unwrap();
    hub_url
        .split(',')
        .find_map(|url| keys.get(url.trim()).cloned())
        .or_else(|| key_of(hub_url))
}

/// The key clients of the hub at `hub_url` present (the first of a comma-separated list
/// that has one): a [`TestHub`]'s admin key, an [`InProcessSuite`]'s user key.
pub fn key_of(hub_url: &str) -> Option<String> {
    let keys = KEYS.lock().unwrap();
    hub_url
        .split(',')
        .find_map(|url| keys.get(url.trim()).cloned())
}

/// An admin key of a key store, made once per `place` (a key-store folder or a Redis URL)
/// in this process: a hub restarted on the same key store keeps its key.
fn admin_key(place: &str, open: impl FnOnce() -> gleitzeit_auth::KeyStore) -> String {
    let mut keys = KEYS.lock().unwrap();
    if let Some(k) = keys.get(place) {
        return k.clone();
    }
    let store = open();
    let key = match store.init("admin") {
        Ok(k) => k.secret,
        // The admin exists already (another hub of the mesh made it): a key of our own.
        Err(_) => {
            store
                .create_key("e2e", "admin", None, vec![])
                .expect("key")
                .secret
        }
    };
    keys.insert(place.to_string(), key.clone());
    key
}

/// The admin key of the key store in `data_dir` (made once per folder: a hub restarted on
/// the same folder keeps its key).
pub fn admin_key_in_dir(data_dir: &Path) -> String {
    admin_key(&data_dir.display().to_string(), || {
        gleitzeit_auth::KeyStore::open_dir(data_dir).expect("key store opens")
    })
}

/// An admin key in the key store of a mesh Redis.
pub fn admin_key_in_redis(redis_url: &str) -> String {
    admin_key(redis_url, || {
        gleitzeit_auth::KeyStore::open_redis(redis_url).expect("key store opens")
    })
}

/// Makes a user with `role` in the key store of `data_dir` and a key for it.
pub fn user_key_in_dir(data_dir: &Path, name: &str, role: &str) -> String {
    let store = gleitzeit_auth::KeyStore::open_dir(data_dir).expect("key store opens");
    let role = role.parse().expect("role");
    if store.user(name).expect("user lookup").is_none() {
        store.create_user(name, role).expect("user");
    }
    store
        .create_key("e2e", name, None, vec![])
        .expect("key")
        .secret
}

/// Runs `gz --hub-url HUB_URL ARGS` in the repository root; returns (exit code, stdout,
/// stderr).
pub fn gz_at(hub_url: &str, args: &[&str]) -> (i32, String, String) {
    gz_at_with_env(hub_url, &[], args)
}

/// [`gz_at`] with extra environment variables (e.g. `GLEITZEIT_LOG_LEVEL` for gz's own log
/// on stderr).
pub fn gz_at_with_env(hub_url: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("gz"));
    cmd.envs(env.iter().copied());
    if let Some(key) = key_of(hub_url) {
        cmd.env("GLEITZEIT_API_KEY", key);
    }
    if let Some(ca) = ca_of(hub_url) {
        cmd.env("GLEITZEIT_TLS_CA", ca);
    }
    let out = cmd
        .arg("--hub-url")
        .arg(hub_url)
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("gz runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `gz run FILE --json` against the hub at `hub_url`: exit code and the JSON document.
pub fn run_json_at(hub_url: &str, file: &Path) -> (i32, serde_json::Value) {
    let (code, out, err) = gz_at(hub_url, &["run", &file.display().to_string(), "--json"]);
    let doc = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("gz run --json printed no JSON ({e}):\n{out}\n{err}"));
    (code, doc)
}

/// Waits until the workflow is completed, failed or cancelled, asking the hub at `hub_url`;
/// returns `gz inspect workflow ID --json`.
pub async fn wait_finished_at(hub_url: &str, id: &str, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, out, _) = gz_at(hub_url, &["inspect", "workflow", id, "--json"]);
        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&out) {
            if matches!(
                doc["workflow"]["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return doc;
            }
        }
        assert!(
            Instant::now() < deadline,
            "workflow {id} did not finish within {limit:?}: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `gz submit FILE --json` against the hub at `hub_url`: the workflow id.
pub fn submit_at(hub_url: &str, file: &Path) -> String {
    let (code, out, err) = gz_at(hub_url, &["submit", &file.display().to_string(), "--json"]);
    assert_eq!(code, 0, "gz submit failed: {out}{err}");
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["workflow_id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no workflow id in {out}"))
}

/// A workflow of `chains` chains of `len` Python tasks named `<prefix><chain>_<k>`; each
/// sleeps `sleep` seconds, then (with `log`) appends its id to that file, so a test can
/// count how often each ran ([`executions`]).
pub fn chains_yaml(
    prefix: &str,
    chains: usize,
    len: usize,
    sleep: f64,
    log: Option<&Path>,
) -> String {
    let mut yaml = format!("name: {prefix}chains\ntasks:\n");
    let record = log
        .map(|l| format!("open('{}', 'a').write('{{id}}\\\\n')\\n", l.display()))
        .unwrap_or_default();
    for c in 0..chains {
        for k in 0..len {
            let id = format!("{prefix}{c}_{k}");
            let deps = if k == 0 {
                String::new()
            } else {
                format!("    dependencies: [{prefix}{c}_{}]\n", k - 1)
            };
            let record = record.replace("{id}", &id);
            yaml.push_str(&format!(
                "  - id: {id}\n    method: python/execute\n{deps}    parameters: {{ code: \"import time\\ntime.sleep({sleep})\\n{record}result = {k}\" }}\n"
            ));
        }
    }
    yaml
}

/// How often each id was appended to `log` (see [`chains_yaml`]).
pub fn executions(log: &Path) -> std::collections::HashMap<String, usize> {
    let mut runs = std::collections::HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        *runs.entry(line.to_string()).or_default() += 1;
    }
    runs
}

/// One ping to `target` through `client` (5 s timeout): the answer or the error.
pub async fn ping(
    client: &HubClient,
    target: gleitzeit_protocol::Target,
) -> Result<serde_json::Value, gleitzeit_protocol::GzError> {
    client
        .request_with_timeout(
            target,
            gleitzeit_protocol::events::PING,
            serde_json::Value::Null,
            Duration::from_secs(5),
        )
        .await
}

/// Asserts that the workflow document (`gz inspect workflow --json`) completed with `n`
/// tasks, each completed with a recorded result, and that each ran at least once according
/// to `log` ([`chains_yaml`]). Returns (tasks run more than once, extra runs).
pub fn assert_all_completed_once_recorded(
    doc: &serde_json::Value,
    n: usize,
    log: &Path,
) -> (usize, usize) {
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let tasks = doc["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), n);
    assert!(
        tasks
            .iter()
            .all(|t| t["status"] == "completed" && !t["result"].is_null()),
        "every task has its result"
    );
    let runs = executions(log);
    assert_eq!(runs.len(), n, "every task ran");
    let twice = runs.values().filter(|c| **c > 1).count();
    let extra = runs.values().map(|c| c - 1).sum();
    (twice, extra)
}

/// Sends `n` pings to `target` at once through `client`; how many each component answered.
pub async fn spread_pings(
    client: &HubClient,
    target: gleitzeit_protocol::Target,
    n: usize,
) -> std::collections::HashMap<String, usize> {
    let mut calls = Vec::new();
    for _ in 0..n {
        let (c, t) = (client.clone(), target.clone());
        calls.push(tokio::spawn(async move {
            c.request_with_timeout(
                t,
                gleitzeit_protocol::events::PING,
                serde_json::Value::Null,
                Duration::from_secs(20),
            )
            .await
        }));
    }
    let mut counts = std::collections::HashMap::new();
    for call in calls {
        let reply = call
            .await
            .expect("join")
            .expect("every request is answered");
        let id = reply["component_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// Asserts that `n` requests were all answered and each of `ids` answered at least
/// `at_least` of them.
pub fn assert_spread(
    counts: &std::collections::HashMap<String, usize>,
    ids: &[&str],
    n: usize,
    at_least: usize,
) {
    assert_eq!(counts.values().sum::<usize>(), n, "{counts:?}");
    for id in ids {
        assert!(
            counts.get(*id).copied().unwrap_or(0) >= at_least,
            "{id} got too little work: {counts:?}"
        );
    }
}

/// GET a JSON document, or None. An HTTPS hub started by [`TestHub::start_tls`] is trusted
/// through its CA.
pub async fn http_json(base: &str, path: &str) -> Option<serde_json::Value> {
    let mut client = reqwest::Client::builder();
    if let Some(ca) = ca_of(base) {
        let pem = std::fs::read(&ca).expect("CA file");
        for cert in reqwest::Certificate::from_pem_bundle(&pem).expect("CA PEM") {
            client = client.add_root_certificate(cert);
        }
    }
    let mut req = client.build().ok()?.get(format!("{base}{path}"));
    if let Some(key) = key_of(base) {
        req = req.bearer_auth(key);
    }
    let resp = req.timeout(Duration::from_secs(2)).send().await.ok()?;
    resp.json().await.ok()
}

/// Polls `cond` until true; panics after `limit`.
pub async fn wait_for<F, Fut>(limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The task named `id` in a `gz run --json` / `gz inspect --json` document.
pub fn task<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == id || t["task_id"] == id))
        .unwrap_or_else(|| panic!("no task {id} in {doc}"))
}

/// Writes a workflow file into a fresh temp folder and returns its path.
pub fn workflow_file(name: &str, yaml: &str) -> PathBuf {
    let dir = temp_path("wf");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write workflow");
    path
}

/// Writes an ollama-provider config file and returns its path.
pub fn provider_config(yaml: &str) -> PathBuf {
    workflow_file("ollama.yaml", yaml)
}
