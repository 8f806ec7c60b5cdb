//! The suite in the test's own process: the hub and one of each service started on
//! `127.0.0.1:0` through their `bind`/`run(config, shutdown)` entry points with
//! `Config::for_tests`, on a runtime of their own (a dedicated thread), so a test blocking
//! on `gz` cannot starve them.
//!
//! Authentication is on, as in production: the suite makes a key store in its data dir the
//! way `gz auth init` does (an ADMIN), then a SERVICE user whose key every service presents
//! and a USER whose key the test presents (`gz`, clients, HTTP waits).
//!
//! Dropping the suite (or [`InProcessSuite::shutdown`]) stops every service, then the hub,
//! each through its shutdown signal, and waits for all of them; whatever is still running
//! after the grace period is cancelled with the runtime, so nothing outlives the suite.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gleitzeit_hub_client::{ClientConfig, HubClient, Incoming};
use gleitzeit_runtime::{Shutdown, ShutdownTrigger};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::processes::wait_registered_at;
use crate::{
    gz_at, remember_key, remember_service_key, run_json_at, submit_at, temp_path, wait_finished_at,
    SuiteOptions,
};

/// The component types the suite's SERVICE key may register as.
const SERVICE_TYPES: &[&str] = &[
    "queue-manager",
    "dependency-resolver",
    "execution-engine",
    "python-provider",
    "ollama-provider",
];

/// How long each service and the hub may take to stop once told to.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One running part of the suite: its name, its shutdown trigger and its task.
struct Running {
    name: String,
    stop: ShutdownTrigger,
    task: JoinHandle<Result<(), String>>,
}

/// What [`InProcessSuite::shutdown`] found.
#[derive(Debug)]
pub struct ShutdownReport {
    /// Parts that returned an error, or did not stop within the grace period.
    pub unclean: Vec<String>,
}

/// The hub and services, in this process.
pub struct InProcessSuite {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The hub's port.
    pub port: u16,
    /// The key the test presents (role USER).
    pub key: String,
    /// The key the services present (role SERVICE).
    pub service_key: String,
    /// The ADMIN key (made as `gz auth init` makes it).
    pub admin_key: String,
    /// Data dir of the hub's key store, the store and the Python provider.
    pub data_dir: PathBuf,
    runtime: Handle,
    parts: Arc<Mutex<Vec<Running>>>,
    hub: Option<Running>,
    stop_runtime: Option<tokio::sync::oneshot::Sender<StopOrder>>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

/// What the suite's runtime thread stops, in order, before it ends: the services, then the
/// hub.
type StopOrder = (Vec<Running>, Option<Running>);

impl InProcessSuite {
    /// Starts the hub, queue-manager, dependency-resolver, execution-engine and
    /// python-provider and waits until every service registered.
    pub async fn start(opts: SuiteOptions) -> InProcessSuite {
        // Logs of every part on stderr (shown for a failing test; GLEITZEIT_LOG_LEVEL).
        gleitzeit_runtime::init_tracing(gleitzeit_runtime::LogFormat::Text);
        let data_dir = temp_path("inproc");
        std::fs::create_dir_all(&data_dir).expect("suite data dir");
        let keys = make_keys(&data_dir);
        let (runtime, stop_runtime, thread) = own_runtime();
        let hub_config = central_hub::HubConfig::for_tests(&data_dir);
        let bound = runtime
            .spawn(central_hub::bind(hub_config))
            .await
            .expect("hub task")
            .expect("hub binds");
        let addr = bound.local_addr();
        let (hub_stop, hub_shutdown) = Shutdown::new();
        let hub_task = runtime
            .spawn(async move { bound.serve(hub_shutdown).await.map_err(|e| e.to_string()) });
        let url = format!("http://{addr}");
        remember_key(&url, &keys.user);
        remember_service_key(&url, &keys.service);
        let mut suite = InProcessSuite {
            url,
            port: addr.port(),
            key: keys.user,
            service_key: keys.service,
            admin_key: keys.admin,
            data_dir,
            runtime,
            parts: Arc::new(Mutex::new(Vec::new())),
            hub: Some(Running {
                name: "central-hub".into(),
                stop: hub_stop,
                task: hub_task,
            }),
            stop_runtime: Some(stop_runtime),
            thread: Some(thread),
        };
        suite.start_services(&opts);
        suite
            .wait_registered(&["qm-1", "dr-1", "ee-1", "py-1"])
            .await;
        suite
    }

    fn start_services(&mut self, opts: &SuiteOptions) {
        let (url, key, dir) = (self.url.clone(), self.service_key.clone(), &self.data_dir);
        let qm = queue_manager::Config {
            component_id: Some("qm-1".into()),
            provider_grace: Duration::from_secs_f64(opts.provider_grace),
            redis_url: opts.redis_url.clone(),
            ..queue_manager::Config::for_tests(&url, &key, dir)
        };
        self.spawn("qm-1", |stop| async move {
            queue_manager::run(qm, stop)
                .await
                .map_err(|e| e.to_string())
        });
        let dr = dependency_resolver::Config {
            component_id: Some("dr-1".into()),
            ..dependency_resolver::Config::for_tests(&url, &key)
        };
        self.spawn("dr-1", |stop| async move {
            dependency_resolver::run(dr, stop)
                .await
                .map_err(|e| e.to_string())
        });
        let ee = execution_engine::Config {
            component_id: Some("ee-1".into()),
            prefetch: opts.prefetch,
            ..execution_engine::Config::for_tests(&url, &key)
        };
        self.spawn("ee-1", |stop| async move {
            execution_engine::run(ee, stop)
                .await
                .map_err(|e| e.to_string())
        });
        self.add_python_provider("py-1", opts.workers as usize);
    }

    /// Starts one more python-provider, registered as `id`, with `workers` workers.
    pub fn add_python_provider(&mut self, id: &str, workers: usize) {
        let py = python_provider::Config {
            component_id: Some(id.into()),
            workers,
            ..python_provider::Config::for_tests(&self.url, &self.service_key, &self.data_dir)
        };
        self.spawn(id, |stop| async move {
            python_provider::run(py, stop)
                .await
                .map_err(|e| e.to_string())
        });
    }

    /// Starts an ollama-provider, registered as `id`, with the endpoints of `config_yaml`
    /// (the provider config file format, `providers/ollama.yaml`).
    pub fn add_ollama_provider(&mut self, id: &str, config_yaml: &str) {
        let provider =
            ollama_provider::config::ProviderConfig::from_yaml(config_yaml).expect("config");
        let config = ollama_provider::Config {
            component_id: Some(id.into()),
            ..ollama_provider::Config::for_tests(&self.url, &self.service_key, provider)
        };
        self.spawn(id, |stop| async move {
            ollama_provider::run(config, stop)
                .await
                .map_err(|e| e.to_string())
        });
    }

    fn spawn<F, Fut>(&mut self, name: &str, run: F)
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let (stop, shutdown) = Shutdown::new();
        let task = self.runtime.spawn(run(shutdown));
        self.parts.lock().unwrap().push(Running {
            name: name.to_string(),
            stop,
            task,
        });
    }

    /// Waits until the components with these ids are registered.
    pub async fn wait_registered(&self, ids: &[&str]) {
        wait_registered_at(&self.url, ids).await;
    }

    /// A client of the hub presenting the test's USER key.
    pub async fn client(&self) -> (HubClient, Incoming) {
        HubClient::connect(ClientConfig::client(&self.url).with_api_key(&self.key))
            .await
            .expect("client connects")
    }

    /// Runs `gz` against the hub with the USER key; returns (exit code, stdout, stderr).
    pub fn gz(&self, args: &[&str]) -> (i32, String, String) {
        gz_at(&self.url, args)
    }

    /// `gz submit FILE --json`: the workflow id.
    pub fn submit(&self, file: &Path) -> String {
        submit_at(&self.url, file)
    }

    /// Waits until the workflow is completed, failed or cancelled; returns
    /// `gz inspect workflow ID --json`.
    pub async fn wait_finished(&self, id: &str, limit: Duration) -> serde_json::Value {
        wait_finished_at(&self.url, id, limit).await
    }

    /// `gz run FILE --json`: exit code and the JSON document.
    pub fn run_json(&self, file: &Path) -> (i32, serde_json::Value) {
        run_json_at(&self.url, file)
    }

    /// Stops every service, then the hub, and says which did not stop cleanly.
    pub async fn shutdown(mut self) -> ShutdownReport {
        let thread = self.order_stop();
        let unclean = match thread {
            Some(t) => tokio::task::spawn_blocking(move || t.join().unwrap_or_default())
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        };
        ShutdownReport { unclean }
    }

    /// Hands the running parts to the runtime thread, which stops them and ends; its handle.
    fn order_stop(&mut self) -> Option<std::thread::JoinHandle<Vec<String>>> {
        let parts = std::mem::take(&mut *self.parts.lock().unwrap());
        let hub = self.hub.take();
        if let Some(stop) = self.stop_runtime.take() {
            let _ = stop.send((parts, hub));
        }
        self.thread.take()
    }
}

/// Fires every service's shutdown, waits for them, then does the same for the hub.
async fn stop_all(parts: Vec<Running>, hub: Option<Running>) -> Vec<String> {
    let mut unclean = Vec::new();
    for part in &parts {
        part.stop.fire();
    }
    for part in parts.into_iter().chain(hub) {
        if part.name == "central-hub" {
            part.stop.fire();
        }
        match tokio::time::timeout(STOP_GRACE, part.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => unclean.push(format!("{}: {e}", part.name)),
            Ok(Err(e)) => unclean.push(format!("{}: {e}", part.name)),
            Err(_) => unclean.push(format!("{}: still running after {STOP_GRACE:?}", part.name)),
        }
    }
    unclean
}

impl Drop for InProcessSuite {
    fn drop(&mut self) {
        if let Some(thread) = self.order_stop() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A multi-threaded runtime on a thread of its own: its handle, the sender of the parts to
/// stop (the thread stops them in order, then ends the runtime), and the thread, which
/// returns what did not stop cleanly.
fn own_runtime() -> (
    Handle,
    tokio::sync::oneshot::Sender<StopOrder>,
    std::thread::JoinHandle<Vec<String>>,
) {
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<StopOrder>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("suite runtime");
        handle_tx.send(runtime.handle().clone()).expect("handle");
        // A watchdog: a test that fails shows whether the suite's runtime itself stalled.
        runtime.spawn(async {
            let mut last = std::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let gap = last.elapsed();
                if gap > Duration::from_millis(1000) {
                    eprintln!("WATCHDOG: suite runtime stalled for {gap:?}");
                }
                last = std::time::Instant::now();
            }
        });
        let unclean = runtime.block_on(async {
            match stop_rx.await {
                Ok((parts, hub)) => stop_all(parts, hub).await,
                Err(_) => Vec::new(),
            }
        });
        // Everything was told to stop and waited for: cancel whatever is left at once.
        runtime.shutdown_timeout(Duration::from_millis(500));
        unclean
    });
    let handle = handle_rx.recv().expect("suite runtime starts");
    (handle, stop_tx, thread)
}

/// The suite's keys: ADMIN (made as `gz auth init` does), SERVICE and USER.
struct Keys {
    admin: String,
    service: String,
    user: String,
}

fn make_keys(data_dir: &Path) -> Keys {
    let store = gleitzeit_auth::KeyStore::open_dir(data_dir).expect("key store opens");
    let admin = store.init("admin").expect("auth init").secret;
    let key_for = |user: &str, role: &str, component_types: &[&str]| {
        store
            .create_user(user, role.parse().expect("role"))
            .expect("user");
        let types = component_types.iter().map(|t| t.to_string()).collect();
        store
            .create_key("in-process suite", user, None, types)
            .expect("key")
            .secret
    };
    // A SERVICE key names the component types it may register as.
    let service = key_for("suite-services", "service", SERVICE_TYPES);
    let user = key_for("tester", "user", &[]);
    Keys {
        admin,
        service,
        user,
    }
}
