//! End-to-end test support: locating and starting the real binaries on free ports, and
//! killing every child when a test ends, even when it fails (kill on drop).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::{ClientConfig, HubClient, Incoming};

/// The directory holding the built binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Path of one of the workspace's binaries; panics with the build command when missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --bins` before the tests",
        p.display()
    );
    p
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
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

/// The admin key of the hub at `hub_url` (the first of a comma-separated list).
pub fn key_of(hub_url: &str) -> Option<String> {
    let keys = KEYS.lock().unwrap();
    hub_url
        .split(',')
        .find_map(|url| keys.get(url.trim()).cloned())
}

/// An admin key of a key store, made once per `place` (a hub URL or a Redis URL) in this
/// process: a hub restarted on the same port keeps its key store and key.
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

/// The admin key of the hub at `url` whose key store is in `data_dir`.
pub fn admin_key_in_dir(url: &str, data_dir: &Path) -> String {
    admin_key(url, || {
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

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process that is killed when dropped.
pub struct Proc {
    /// What it is.
    pub name: String,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Spawns `cmd` with output to a log file under the target dir (shown on failure).
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let logs = bin_dir().join("e2e-logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        let log_path = logs.join(format!("{name}-{}.log", free_port()));
        let log = std::fs::File::create(&log_path).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            log: log_path,
            child: Some(child),
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `limit` for the exit status (None: still running).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        self.wait_exit(limit)
    }

    /// Waits up to `limit` for the process to exit by itself (None: still running).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a signal by name (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, name: &str) {
        if let Some(c) = self.child.as_ref() {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(c.id().to_string())
                .status();
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A hub on a free port with fast heartbeats (interval 0.3 s, timeout 1.5 s), requiring
/// keys (its key store is in its own data dir, or the mesh Redis), with an admin key that
/// every process started through this module presents.
pub struct TestHub {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:<port>` (`https://` when started with [`TestHub::start_tls`]).
    pub url: String,
    /// Its port.
    pub port: u16,
    /// Its data dir (key store).
    pub data_dir: PathBuf,
    /// An admin key.
    pub key: String,
}

impl TestHub {
    /// Starts the hub and waits until `/health` answers.
    pub async fn start() -> TestHub {
        Self::start_on(free_port()).await
    }

    /// Starts the hub on a given port.
    pub async fn start_on(port: u16) -> TestHub {
        Self::start_with(port, &[]).await
    }

    /// Starts a hub of the mesh on this Redis, with the id `hub_id`.
    pub async fn start_in_mesh(redis_url: &str, hub_id: &str) -> TestHub {
        Self::start_with(free_port(), &["--redis-url", redis_url, "--hub-id", hub_id]).await
    }

    /// Starts the hub on a given port with extra flags (which replace the test defaults of
    /// the same name).
    pub async fn start_with(port: u16, extra: &[&str]) -> TestHub {
        Self::launch(format!("http://127.0.0.1:{port}"), port, extra).await
    }

    /// Starts the hub serving HTTPS/WSS with this certificate and key (PEM files) on a free
    /// port; its URL is `https://127.0.0.1:<port>`, and every process started through this
    /// module trusts `ca` (`GLEITZEIT_TLS_CA`), as do this module's HTTP waits.
    pub async fn start_tls(cert: &Path, key: &Path, ca: &Path, extra: &[&str]) -> TestHub {
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        CAS.lock().unwrap().insert(url.clone(), ca.to_path_buf());
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut flags = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
        flags.extend_from_slice(extra);
        Self::launch(url, port, &flags).await
    }

    async fn launch(url: String, port: u16, extra: &[&str]) -> TestHub {
        let data_dir = std::env::temp_dir().join(format!("gz-hub-{}-{port}", std::process::id()));
        let mesh = extra
            .iter()
            .position(|a| *a == "--redis-url")
            .and_then(|i| extra.get(i + 1));
        let key = match mesh {
            Some(redis_url) => admin_key_in_redis(redis_url),
            None if extra.contains(&"off") => String::new(),
            None => admin_key_in_dir(&url, &data_dir),
        };
        KEYS.lock().unwrap().insert(url.clone(), key.clone());
        let mut cmd = Command::new(bin("central-hub"));
        cmd.args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&data_dir);
        for (flag, value) in [
            ("--heartbeat-interval", "0.3"),
            ("--heartbeat-timeout", "1.5"),
        ] {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        cmd.args(extra);
        let proc = Proc::spawn("central-hub", cmd);
        wait_for(Duration::from_secs(20), || async {
            http_json(&url, "/livez").await.is_some()
        })
        .await;
        TestHub {
            proc,
            url,
            port,
            data_dir,
            key,
        }
    }

    /// A key for a new user of this hub with `role`.
    pub fn user_key(&self, name: &str, role: &str) -> String {
        user_key_in_dir(&self.data_dir, name, role)
    }

    /// Starts a service binary connected to this hub.
    pub fn service(&self, name: &str, id: &str, args: &[&str]) -> Proc {
        service_at(&self.url, name, id, args)
    }

    /// A plain client of this hub.
    pub async fn client(&self) -> (HubClient, Incoming) {
        HubClient::connect(ClientConfig::client(&self.url).with_api_key(&self.key))
            .await
            .expect("client connects")
    }

    /// The component table.
    pub async fn components(&self) -> Vec<serde_json::Value> {
        http_json(&self.url, "/components")
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits until the components with these ids are registered.
    pub async fn wait_registered(&self, ids: &[&str]) {
        wait_for(Duration::from_secs(20), || async {
            let list = self.components().await;
            ids.iter()
                .all(|id| list.iter().any(|c| c["component_id"] == *id))
        })
        .await;
    }
}

/// Runs `gz --hub-url HUB_URL ARGS` in the repository root; returns (exit code, stdout,
/// stderr).
pub fn gz_at(hub_url: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("gz"));
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

/// Starts a service binary connected to `hub_url` (one hub, or several comma-separated).
pub fn service_at(hub_url: &str, name: &str, id: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin(name));
    if let Some(key) = key_of(hub_url) {
        cmd.env("GLEITZEIT_API_KEY", key);
    }
    if let Some(ca) = ca_of(hub_url) {
        cmd.env("GLEITZEIT_TLS_CA", ca);
    }
    cmd.env("GLEITZEIT_HUB_URL", hub_url)
        .env("GLEITZEIT_COMPONENT_ID", id)
        .env(
            "GLEITZEIT_LOG_LEVEL",
            std::env::var("GZ_E2E_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
        )
        .args(args);
    Proc::spawn(id, cmd)
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

/// A whole local suite for workflow tests: hub, queue-manager, dependency-resolver,
/// execution-engine and python-provider, with their own data dir.
pub struct TestSuite {
    /// The hub.
    pub hub: TestHub,
    /// The services, by name.
    pub services: Vec<Proc>,
    /// The queue-manager's data dir.
    pub data_dir: PathBuf,
}

/// Options for [`TestSuite::start`].
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Python workers.
    pub workers: u32,
    /// Engine prefetch factor.
    pub prefetch: u32,
    /// Seconds queued tasks wait for a provider of their method (queue-manager).
    pub provider_grace: f64,
    /// Redis URL for the queue-manager's store (None: the embedded SQLite store).
    pub redis_url: Option<String>,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        SuiteOptions {
            workers: 2,
            prefetch: 4,
            provider_grace: 30.0,
            redis_url: None,
        }
    }
}

impl TestSuite {
    /// Starts the suite and waits until every service registered.
    pub async fn start(opts: SuiteOptions) -> TestSuite {
        Self::start_on_hub(TestHub::start().await, opts).await
    }

    /// Starts the services on a hub already running (e.g. [`TestHub::start_tls`]) and waits
    /// until every one registered.
    pub async fn start_on_hub(hub: TestHub, opts: SuiteOptions) -> TestSuite {
        let data_dir =
            std::env::temp_dir().join(format!("gz-e2e-{}-{}", std::process::id(), hub.port));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut suite = TestSuite {
            hub,
            services: Vec::new(),
            data_dir,
        };
        suite.start_services(&opts).await;
        suite
    }

    /// (Re)starts every service.
    pub async fn start_services(&mut self, opts: &SuiteOptions) {
        let dd = self.data_dir.display().to_string();
        let workers = opts.workers.to_string();
        let prefetch = opts.prefetch.to_string();
        let grace = opts.provider_grace.to_string();
        let mut qm_args = vec!["--data-dir", &dd, "--provider-grace", &grace];
        if let Some(url) = &opts.redis_url {
            qm_args.extend(["--redis-url", url.as_str()]);
        }
        self.services = vec![
            self.hub.service("queue-manager", "qm-1", &qm_args),
            self.hub.service("dependency-resolver", "dr-1", &[]),
            self.hub
                .service("execution-engine", "ee-1", &["--prefetch", &prefetch]),
            self.hub
                .service("python-provider", "py-1", &["--workers", &workers]),
        ];
        self.hub
            .wait_registered(&["qm-1", "dr-1", "ee-1", "py-1"])
            .await;
    }

    /// Kills every service (SIGKILL).
    pub fn kill_services(&mut self) {
        for p in &mut self.services {
            p.kill9();
        }
        self.services.clear();
    }

    /// Runs `gz` against this suite's hub; returns (exit code, stdout, stderr).
    pub fn gz(&self, args: &[&str]) -> (i32, String, String) {
        gz_at(&self.hub.url, args)
    }

    /// `gz submit FILE --json`: the workflow id.
    pub fn submit(&self, file: &Path) -> String {
        submit_at(&self.hub.url, file)
    }

    /// Waits until the workflow is completed, failed or cancelled (services may be
    /// restarting meanwhile); returns `gz inspect workflow ID --json`.
    pub async fn wait_finished(&self, id: &str, limit: Duration) -> serde_json::Value {
        wait_finished_at(&self.hub.url, id, limit).await
    }

    /// `gz run FILE --json`: exit code and the JSON document.
    pub fn run_json(&self, file: &Path) -> (i32, serde_json::Value) {
        let (code, out, err) = self.gz(&["run", &file.display().to_string(), "--json"]);
        let doc = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("gz run --json printed no JSON ({e}):\n{out}\n{err}"));
        (code, doc)
    }
}

impl Drop for TestSuite {
    fn drop(&mut self) {
        self.kill_services();
        let _ = std::fs::remove_dir_all(&self.data_dir);
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
    let dir = std::env::temp_dir().join(format!("gz-wf-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write workflow");
    path
}

/// A simulated LLM server (`gleitzeit-llm-sim`) on a free port.
pub struct LlmSim {
    /// The process.
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl LlmSim {
    /// Starts the simulator with extra flags (e.g. `--max-concurrent 4`) and waits until
    /// `/api/tags` answers.
    pub async fn start(name: &str, args: &[&str]) -> LlmSim {
        let port = free_port();
        let mut cmd = Command::new(bin("gleitzeit-llm-sim"));
        cmd.args(["--port", &port.to_string(), "--name", name])
            .args(args);
        let proc = Proc::spawn(&format!("sim-{name}"), cmd);
        let url = format!("http://127.0.0.1:{port}");
        wait_for(Duration::from_secs(20), || async {
            http_json(&url, "/api/tags").await.is_some()
        })
        .await;
        LlmSim { proc, url }
    }

    /// The simulator's counters (`/_sim/stats`).
    pub async fn stats(&self) -> serde_json::Value {
        http_json(&self.url, "/_sim/stats")
            .await
            .unwrap_or(serde_json::Value::Null)
    }
}

/// Writes an ollama-provider config file and returns its path.
pub fn provider_config(yaml: &str) -> PathBuf {
    workflow_file("ollama.yaml", yaml)
}

/// A `redis-server` of a test's own on a free port; killed on drop.
pub struct RedisServer {
    /// The process.
    pub proc: Proc,
    /// Its port.
    pub port: u16,
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    /// Data directory (append-only file lives here).
    pub dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` with `appendonly yes` (so a restart keeps data) and waits for it.
    pub async fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("gz-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = RedisServer {
            proc: Self::spawn(port, &dir),
            port,
            url: format!("redis://127.0.0.1:{port}"),
            dir,
        };
        server.wait_ready().await;
        server
    }

    fn spawn(port: u16, dir: &Path) -> Proc {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", "always", "--dir"])
        .arg(dir);
        Proc::spawn("redis", cmd)
    }

    async fn wait_ready(&mut self) {
        let port = self.port;
        wait_for(Duration::from_secs(20), || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    }

    /// Stops the server (SIGTERM, so it flushes) and starts it again on the same port and dir.
    pub async fn restart(&mut self, down_for: Duration) {
        self.stop();
        tokio::time::sleep(down_for).await;
        self.start_again().await;
    }

    /// Stops the server (SIGTERM); [`RedisServer::start_again`] brings it back.
    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(10));
    }

    /// Starts the server again on the same port and data directory.
    pub async fn start_again(&mut self) {
        self.proc = Self::spawn(self.port, &self.dir);
        self.wait_ready().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.proc.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
