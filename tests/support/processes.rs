//! The real binaries as child processes, started through `gleitzeit-launcher` (the same
//! launcher `gz run` and `gz bench` use): for tests that kill, freeze or restart a process,
//! or look at a binary's own behaviour. A hub is started on port 0 with `--ready-file`, so
//! its port is the one it actually bound; every child is killed when its handle drops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use gleitzeit_hub_client::{ClientConfig, HubClient, Incoming};
use gleitzeit_launcher::{process::log_path, Launch, Process};

use crate::{
    admin_key_in_dir, admin_key_in_redis, bin_dir, ca_of, gz_at, http_json, remember_ca,
    remember_key, service_key_of, submit_at, temp_path, user_key_in_dir, wait_finished_at,
    wait_for,
};

/// How long a child may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A launch of the workspace binary `binary`, called `name`, logging into
/// `target/<profile>/e2e-logs/` (the log is kept for reading after a failure).
pub fn launch(name: &str, binary: &str) -> Launch {
    let log = log_path(&bin_dir().join("e2e-logs"), name);
    Launch::binary(name, binary, log).unwrap_or_else(|e| panic!("{e}"))
}

/// Spawns `launch`; panics with the reason when it cannot start.
fn spawn(launch: Launch) -> Process {
    launch.spawn().unwrap_or_else(|e| panic!("{e}"))
}

/// The key-store folder of the hub last started at each URL: a hub started again on the
/// same port ([`TestHub::start_on`]) keeps its key store, keys and URL.
static HUB_DIRS: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());

/// A hub with fast heartbeats (interval 0.3 s, timeout 1.5 s), requiring keys (its key
/// store is in its own data dir, or the mesh Redis), with an admin key that every process
/// started through this module presents.
pub struct TestHub {
    /// The process.
    pub proc: Process,
    /// `http://127.0.0.1:<port>` (`https://` when started with [`TestHub::start_tls`]).
    pub url: String,
    /// Its port (the one it bound).
    pub port: u16,
    /// Its data dir (key store).
    pub data_dir: PathBuf,
    /// An admin key.
    pub key: String,
}

impl TestHub {
    /// Starts the hub on a port of its own and waits until it listens.
    pub async fn start() -> TestHub {
        Self::start_with(0, &[]).await
    }

    /// Starts the hub on a given port (a restart: the key store of the hub that was there
    /// before is kept).
    pub async fn start_on(port: u16) -> TestHub {
        Self::start_with(port, &[]).await
    }

    /// Starts a hub of the mesh on this Redis, with the id `hub_id`.
    pub async fn start_in_mesh(redis_url: &str, hub_id: &str) -> TestHub {
        Self::start_with(0, &["--redis-url", redis_url, "--hub-id", hub_id]).await
    }

    /// Starts the hub on `port` (0: a port of its own) with extra flags (which replace the
    /// test defaults of the same name).
    pub async fn start_with(port: u16, extra: &[&str]) -> TestHub {
        Self::launch("http", port, extra, None).await
    }

    /// Starts the hub serving HTTPS/WSS with this certificate and key (PEM files) on a port
    /// of its own; its URL is `https://127.0.0.1:<port>`, and every process started through
    /// this module trusts `ca` (`GLEITZEIT_TLS_CA`), as do this module's HTTP waits.
    pub async fn start_tls(cert: &Path, key: &Path, ca: &Path, extra: &[&str]) -> TestHub {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let mut flags = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
        flags.extend_from_slice(extra);
        Self::launch("https", 0, &flags, Some(ca)).await
    }

    async fn launch(scheme: &str, port: u16, extra: &[&str], ca: Option<&Path>) -> TestHub {
        let previous = (port != 0)
            .then(|| {
                let url = format!("{scheme}://127.0.0.1:{port}");
                HUB_DIRS.lock().unwrap().get(&url).cloned()
            })
            .flatten();
        let data_dir = previous.unwrap_or_else(|| temp_path("hub"));
        std::fs::create_dir_all(&data_dir).expect("hub data dir");
        let mesh = extra
            .iter()
            .position(|a| *a == "--redis-url")
            .and_then(|i| extra.get(i + 1));
        let key = match mesh {
            Some(redis_url) => admin_key_in_redis(redis_url),
            None if extra.contains(&"off") => String::new(),
            None => admin_key_in_dir(&data_dir),
        };
        let ready = data_dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let mut hub = launch("central-hub", "central-hub")
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--ready-file")
            .arg(&ready);
        for (flag, value) in [
            ("--heartbeat-interval", "0.3"),
            ("--heartbeat-timeout", "1.5"),
        ] {
            if !extra.contains(&flag) {
                hub = hub.args([flag, value]);
            }
        }
        let mut proc = spawn(hub.args(extra));
        let addr = gleitzeit_launcher::wait_ready_file(&mut proc, &ready, READY_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!("{scheme}://127.0.0.1:{}", addr.port());
        if let Some(ca) = ca {
            remember_ca(&url, ca);
        }
        remember_key(&url, &key);
        HUB_DIRS
            .lock()
            .unwrap()
            .insert(url.clone(), data_dir.clone());
        TestHub {
            proc,
            url,
            port: addr.port(),
            data_dir,
            key,
        }
    }

    /// A key for a new user of this hub with `role`.
    pub fn user_key(&self, name: &str, role: &str) -> String {
        user_key_in_dir(&self.data_dir, name, role)
    }

    /// Starts a service binary connected to this hub.
    pub fn service(&self, name: &str, id: &str, args: &[&str]) -> Process {
        service_at(&self.url, name, id, args)
    }

    /// Starts a service binary connected to this hub, with extra environment variables.
    pub fn service_with_env(
        &self,
        name: &str,
        id: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Process {
        service_with_env_at(&self.url, name, id, args, env)
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
        wait_registered_at(&self.url, ids).await;
    }
}

/// Waits until the components with these ids are registered at the hub at `hub_url`.
pub async fn wait_registered_at(hub_url: &str, ids: &[&str]) {
    wait_for(READY_WITHIN, || async {
        let list = http_json(hub_url, "/components")
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        ids.iter()
            .all(|id| list.iter().any(|c| c["component_id"] == *id))
    })
    .await;
}

/// Starts a service binary connected to `hub_url` (one hub, or several comma-separated),
/// presenting the hub's service key.
pub fn service_at(hub_url: &str, name: &str, id: &str, args: &[&str]) -> Process {
    service_with_env_at(hub_url, name, id, args, &[])
}

/// [`service_at`] with extra environment variables for the service (e.g. a secret an
/// http-provider hands to its tasks' requests).
pub fn service_with_env_at(
    hub_url: &str,
    name: &str,
    id: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Process {
    let mut service = launch(id, name);
    for (key, value) in env {
        service = service.env(key, value);
    }
    if let Some(key) = service_key_of(hub_url) {
        service = service.env("GLEITZEIT_API_KEY", key);
    }
    if let Some(ca) = ca_of(hub_url) {
        service = service.env("GLEITZEIT_TLS_CA", ca);
    }
    spawn(
        service
            .env("GLEITZEIT_HUB_URL", hub_url)
            .env("GLEITZEIT_COMPONENT_ID", id)
            .env(
                "GLEITZEIT_LOG_LEVEL",
                std::env::var("GZ_E2E_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            )
            .args(args),
    )
}

/// A whole local suite of real processes: hub, queue-manager, dependency-resolver,
/// execution-engine and python-provider, with their own data dir.
pub struct TestSuite {
    /// The hub.
    pub hub: TestHub,
    /// The services, by name.
    pub services: Vec<Process>,
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
    /// A simulated LLM endpoint (`gleitzeit-llm-sim` with `sim_args`) and an
    /// ollama-provider `llm-1` on this suite routing to it with `slots` slots, registered.
    pub async fn with_llm_sim(&self, sim_args: &[&str], slots: u32) -> (LlmSim, Process) {
        let sim = LlmSim::start("sim", sim_args).await;
        let cfg = crate::provider_config(&format!(
            "endpoints:\n  - {{ name: sim, url: \"{}\", max_concurrent: {slots} }}\n",
            sim.url
        ));
        let provider = self.hub.service(
            "ollama-provider",
            "llm-1",
            &["--config", &cfg.display().to_string()],
        );
        self.hub.wait_registered(&["llm-1"]).await;
        (sim, provider)
    }

    /// Starts the suite and waits until every service registered.
    pub async fn start(opts: SuiteOptions) -> TestSuite {
        Self::start_on_hub(TestHub::start().await, opts).await
    }

    /// Starts the services on a hub already running (e.g. [`TestHub::start_tls`]) and waits
    /// until every one registered.
    pub async fn start_on_hub(hub: TestHub, opts: SuiteOptions) -> TestSuite {
        let mut suite = TestSuite {
            hub,
            services: Vec::new(),
            data_dir: temp_path("e2e"),
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
            p.kill();
        }
        self.services.clear();
    }

    /// Runs `gz` against this suite's hub; returns (exit code, stdout, stderr).
    pub fn gz(&self, args: &[&str]) -> (i32, String, String) {
        gz_at(&self.hub.url, args)
    }

    /// The hub's `GET /metrics` exposition (every component's figures), read with the
    /// suite's admin key.
    pub async fn metrics_text(&self) -> String {
        reqwest::Client::new()
            .get(format!("{}/metrics", self.hub.url))
            .bearer_auth(&self.hub.key)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the hub answers GET /metrics")
            .text()
            .await
            .expect("the exposition")
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
        crate::run_json_at(&self.hub.url, file)
    }
}

impl Drop for TestSuite {
    fn drop(&mut self) {
        self.kill_services();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A simulated LLM server (`gleitzeit-llm-sim`) on a port of its own.
pub struct LlmSim {
    /// The process.
    pub proc: Process,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl LlmSim {
    /// Starts the simulator with extra flags (e.g. `--max-concurrent 4`) and waits until
    /// it listens (its ready file).
    pub async fn start(name: &str, args: &[&str]) -> LlmSim {
        let ready = temp_path("sim-ready");
        let mut proc = spawn(
            launch(&format!("sim-{name}"), "gleitzeit-llm-sim")
                .args(["--port", "0", "--name", name])
                .arg("--ready-file")
                .arg(&ready)
                .args(args),
        );
        let addr = gleitzeit_launcher::wait_ready_file(&mut proc, &ready, READY_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_file(&ready);
        LlmSim {
            proc,
            url: format!("http://{addr}"),
        }
    }

    /// The simulator's counters (`/_sim/stats`).
    pub async fn stats(&self) -> serde_json::Value {
        http_json(&self.url, "/_sim/stats")
            .await
            .unwrap_or(serde_json::Value::Null)
    }
}

/// A `redis-server` of a test's own with `appendonly yes` (so a restart keeps data); killed
/// on drop.
pub struct RedisServer {
    server: gleitzeit_launcher::RedisServer,
    /// Its port.
    pub port: u16,
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
    /// Data directory (the append-only file lives here).
    pub dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` and waits until it answers with its data loaded.
    pub async fn start() -> RedisServer {
        let dir = temp_path("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let dir_arg = dir.display().to_string();
        let args = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir_arg,
        ];
        let server = gleitzeit_launcher::RedisServer::start(&args, &bin_dir().join("e2e-logs"))
            .unwrap_or_else(|e| panic!("{e}"));
        RedisServer {
            port: server.port(),
            url: server.url(),
            server,
            dir,
        }
    }

    /// The process (to freeze and thaw it).
    pub fn process(&mut self) -> &mut Process {
        self.server.process()
    }

    /// Stops the server (SIGTERM, so it flushes) and starts it again on the same port and
    /// dir after `down_for`.
    pub async fn restart(&mut self, down_for: Duration) {
        self.stop();
        tokio::time::sleep(down_for).await;
        self.start_again().await;
    }

    /// Stops the server (SIGTERM); [`RedisServer::start_again`] brings it back.
    pub fn stop(&mut self) {
        self.server.process().terminate(Duration::from_secs(10));
    }

    /// Starts the server again on the same port and data directory.
    pub async fn start_again(&mut self) {
        self.server.start_again().unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.server.process().kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
