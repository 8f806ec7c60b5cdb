//! Starting and stopping the local suite: the hub and one of each service as child
//! processes, found beside the `gz` executable and started through `gleitzeit-launcher`
//! (the one launcher the end-to-end tests use too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gleitzeit_hub_client::HubClient;
use gleitzeit_launcher::{wait_ready_file, Launch, LaunchError, Process};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::{events, Target};
use gleitzeit_runtime::{LogFormat, Shutdown};
use serde_json::json;

use crate::CmdResult;

/// The services `gz start` launches, in start order.
pub const SERVICES: &[&str] = &[
    "queue-manager",
    "dependency-resolver",
    "execution-engine",
    "python-provider",
    "ollama-provider",
    "http-provider",
];

/// `gz start` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Return once the suite is up and leave it running (stop it with `gz stop`).
    #[arg(long)]
    pub detach: bool,
    /// Where services keep state and logs (default: the user's data dir).
    #[arg(long, env = "GLEITZEIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `gz hub` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// Address to listen on (default: the host of --hub-url).
    #[arg(long, env = "GLEITZEIT_HUB_HOST")]
    pub host: Option<String>,
    /// Port (default: the port of --hub-url).
    #[arg(long, env = "GLEITZEIT_HUB_PORT")]
    pub port: Option<u16>,
    /// Join the hub mesh on this Redis (hubs given the same URL relay to each other).
    #[arg(long, env = "GLEITZEIT_HUB_REDIS_URL")]
    pub redis_url: Option<String>,
    /// This hub's id (must differ between hubs of one mesh).
    #[arg(long, env = "GLEITZEIT_HUB_ID")]
    pub hub_id: Option<String>,
    /// Whether connections must present an API key: `required` (default) or `off`.
    #[arg(long, env = "GLEITZEIT_AUTH", default_value = "required")]
    pub auth: central_hub::AuthMode,
    /// Allow `--auth off` beyond loopback.
    #[arg(long, env = "GLEITZEIT_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Data dir holding the key store.
    #[arg(long, env = "GLEITZEIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Browser origins allowed besides the hub's own, comma-separated.
    #[arg(long, env = "GLEITZEIT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// PEM certificate chain: serve HTTPS/WSS (use an `https://` hub URL). Needs --tls-key.
    #[arg(long, env = "GLEITZEIT_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GLEITZEIT_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
}

pub use gleitzeit_runtime::default_data_dir;

/// Host and port of a hub URL.
pub fn host_port(hub_url: &str) -> Result<(String, u16), GzError> {
    let url = reqwest::Url::parse(hub_url).map_err(|e| {
        GzError::new(
            ErrorCode::Usage,
            format!("invalid hub URL {hub_url:?}: {e}"),
        )
    })?;
    let host = url
        .host_str()
        .ok_or_else(|| GzError::new(ErrorCode::Usage, format!("hub URL {hub_url:?} has no host")))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    Ok((host, url.port_or_known_default().unwrap_or(8000)))
}

/// A launcher error as a `GZnnnn` error (a missing binary gets the build hint).
pub(crate) fn launch_error(e: LaunchError) -> GzError {
    match e {
        LaunchError::Missing { path } => GzError::new(
            ErrorCode::FileNotFound,
            format!("{} not found beside gz", path.display()),
        )
        .with_hint("build every binary: `cargo build --release --bins` (or `cargo build --bins`)"),
        other => GzError::new(ErrorCode::Internal, other.to_string()),
    }
}

/// How long the hub may take to listen.
const HUB_READY: Duration = Duration::from_secs(15);

/// A running local suite, started through the shared launcher (`gleitzeit-launcher`).
/// Children are killed when it is dropped, unless detached.
pub struct LocalSuite {
    children: Vec<Process>,
    hub_url: String,
    env: Vec<(String, String)>,
    data_dir: PathBuf,
    format: &'static str,
    detach: bool,
}

impl LocalSuite {
    /// Starts the hub on `hub_url` and every service; returns once the hub listens.
    pub async fn start(
        hub_url: &str,
        data_dir: &Path,
        log_format: LogFormat,
        detach: bool,
    ) -> Result<LocalSuite, GzError> {
        Self::start_with(Some(hub_url), data_dir, log_format, detach, &[]).await
    }

    /// Like [`LocalSuite::start`], with extra environment variables for every child. With
    /// no `hub_url` the hub binds a free port of 127.0.0.1 and says which in its ready file
    /// (see [`LocalSuite::hub_url`]).
    pub async fn start_with(
        hub_url: Option<&str>,
        data_dir: &Path,
        log_format: LogFormat,
        detach: bool,
        env: &[(&str, String)],
    ) -> Result<LocalSuite, GzError> {
        let (host, port) = match hub_url {
            Some(url) => host_port(url)?,
            None => ("127.0.0.1".to_string(), 0),
        };
        // The suite runs with authentication: gz makes (or reuses) the local suite's key
        // in the store the hub will use, hands it to every child, and uses it itself.
        let mesh_redis = env
            .iter()
            .find(|(k, _)| *k == "GLEITZEIT_HUB_REDIS_URL")
            .map(|(_, v)| v.as_str());
        let key = crate::credentials::ensure_local_key(data_dir, mesh_redis)?;
        crate::credentials::choose(
            key.clone(),
            gleitzeit_runtime::credentials::KeySource::LocalSuite,
        );
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        env.push((gleitzeit_runtime::credentials::API_KEY_ENV.to_string(), key));
        let format = match log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let mut suite = LocalSuite {
            children: Vec::new(),
            hub_url: hub_url.unwrap_or_default().to_string(),
            env,
            data_dir: data_dir.to_path_buf(),
            format,
            detach,
        };
        let addr = suite.start_hub("central-hub", &host, port, &[]).await?;
        if hub_url.is_none() {
            suite.hub_url = format!("http://{addr}");
        }
        for name in SERVICES {
            let hub = suite.hub_url.clone();
            suite.spawn(name, name, &hub, &[])?;
        }
        Ok(suite)
    }

    /// The hub's URL (the one asked for, or the port the hub picked).
    pub fn hub_url(&self) -> &str {
        &self.hub_url
    }

    /// Starts a hub and waits until it listens; the address it bound.
    async fn start_hub(
        &mut self,
        name: &str,
        host: &str,
        port: u16,
        extra_args: &[&str],
    ) -> Result<std::net::SocketAddr, GzError> {
        let ready = self.data_dir.join(format!("{name}.ready"));
        let _ = std::fs::remove_file(&ready);
        let mut args = vec![
            "--host".to_string(),
            host.to_string(),
            "--port".to_string(),
            port.to_string(),
            "--ready-file".to_string(),
            ready.display().to_string(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let hub = self.hub_url.clone();
        let refs: Vec<(&str, &str)> = Vec::new();
        self.spawn_args(name, "central-hub", &hub, &args, &refs)?;
        let process = self
            .children
            .last_mut()
            .ok_or_else(|| GzError::new(ErrorCode::Internal, "the hub was not started"))?;
        let addr = wait_ready_file(process, &ready, HUB_READY)
            .await
            .map_err(launch_error)?;
        let _ = std::fs::remove_file(&ready);
        Ok(addr)
    }

    /// Starts `binary` as `name`, connected to `hub_url`, with extra environment.
    fn spawn(
        &mut self,
        name: &str,
        binary: &str,
        hub_url: &str,
        env: &[(&str, &str)],
    ) -> Result<(), GzError> {
        self.spawn_args(name, binary, hub_url, &[], env)
    }

    fn spawn_args(
        &mut self,
        name: &str,
        binary: &str,
        hub_url: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<(), GzError> {
        let log = self.data_dir.join("logs").join(format!("{name}.log"));
        let mut launch = Launch::binary(name, binary, log)
            .map_err(launch_error)?
            .args(args)
            .env("GLEITZEIT_LOG_FORMAT", self.format)
            .env("GLEITZEIT_DATA_DIR", &self.data_dir);
        if !hub_url.is_empty() {
            launch = launch.env("GLEITZEIT_HUB_URL", hub_url);
        }
        for (k, v) in self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(env.iter().copied())
        {
            launch = launch.env(k, v);
        }
        if self.detach {
            launch = launch.own_process_group();
        }
        self.children.push(launch.spawn().map_err(launch_error)?);
        Ok(())
    }

    /// Starts one more instance of a service (for example a second queue-manager), named
    /// and registered as `instance`, connected to `hub_url` (default: the suite's hub).
    pub fn add_instance(
        &mut self,
        binary_name: &str,
        instance: &str,
        hub_url: Option<&str>,
    ) -> Result<(), GzError> {
        let hub = hub_url.unwrap_or(&self.hub_url).to_string();
        self.spawn(
            instance,
            binary_name,
            &hub,
            &[("GLEITZEIT_COMPONENT_ID", instance)],
        )
    }

    /// Starts another hub on a free port of 127.0.0.1 with the id `hub_id` (it joins the
    /// mesh when the suite's environment names one with `GLEITZEIT_HUB_REDIS_URL`); its URL
    /// once it listens.
    pub async fn add_hub(&mut self, hub_id: &str) -> Result<String, GzError> {
        let addr = self
            .start_hub(hub_id, "127.0.0.1", 0, &["--hub-id", hub_id])
            .await?;
        Ok(format!("http://{addr}"))
    }

    /// Kills one child by name (benchmarks rearranging the suite).
    pub fn kill(&mut self, name: &str) {
        if let Some(pos) = self.children.iter().position(|p| p.name() == name) {
            self.children.remove(pos).kill();
        }
    }

    /// Process ids of the children.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .map(|p| (p.name().to_string(), p.pid()))
            .filter(|(_, pid)| *pid != 0)
            .collect()
    }

    /// Leaves every child running beyond this handle (`gz start --detach`).
    pub fn detach(self) {
        for process in self.children {
            process.detach();
        }
    }

    /// Asks the hub to stop everything, then kills what is left after a grace period.
    pub async fn shutdown(mut self) {
        let _ = request_shutdown(&self.hub_url).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        for process in &mut self.children {
            let left = deadline.saturating_duration_since(Instant::now());
            if process.wait_exit_async(left).await.is_none() {
                process.kill();
            }
        }
    }

    /// Waits until any child exits; returns its name.
    pub async fn any_exit(&mut self) -> String {
        loop {
            for process in &mut self.children {
                if !process.running() {
                    return process.name().to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Waits until a component of each of `types` is registered and healthy.
async fn wait_registered(hub_url: &str, types: &[&str], limit: Duration) -> Result<(), GzError> {
    let deadline = Instant::now() + limit;
    loop {
        let list: Vec<gleitzeit_protocol::payloads::ComponentInfo> =
            crate::status::get_json(hub_url, "/components")
                .await
                .unwrap_or_default();
        let missing: Vec<&str> = types
            .iter()
            .copied()
            .filter(|t| {
                !list.iter().any(|c| {
                    c.registration.component_type == *t
                        && c.health == gleitzeit_protocol::payloads::ComponentHealth::Healthy
                })
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(GzError::new(
                ErrorCode::NoRoute,
                format!(
                    "the suite started, but {} did not register within {limit:?}",
                    missing.join(", ")
                ),
            )
            .with_hint("see their logs in the data dir (`gz logs`)"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn request_shutdown(hub_url: &str) -> Result<(), GzError> {
    let (client, _incoming) =
        HubClient::connect(crate::credentials::client_config(hub_url)).await?;
    let result = client
        .request_with_timeout(
            Target::Hub,
            events::SHUTDOWN_REQUEST,
            json!({"scope": "all"}),
            Duration::from_secs(3),
        )
        .await;
    client.close().await;
    result.map(|_| ())
}

fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("suite.json")
}

/// `gz start`.
pub async fn start(hub_url: &str, log_format: LogFormat, args: StartArgs) -> CmdResult {
    if crate::status::is_alive(hub_url).await {
        return Err(GzError::new(
            ErrorCode::Usage,
            format!("a hub is already running at {hub_url}"),
        )
        .with_hint("stop it with `gz stop`, or pass another --hub-url")
        .into());
    }
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let mut suite = LocalSuite::start(hub_url, &data_dir, log_format, args.detach).await?;
    // Return once every service has registered, so a command right after can use them.
    if let Err(e) = wait_registered(hub_url, SERVICES, Duration::from_secs(20)).await {
        suite.shutdown().await;
        return Err(e.into());
    }
    let pids = suite.pids();
    eprintln!(
        "gleitzeit suite started at {hub_url} (logs in {})",
        data_dir.join("logs").display()
    );
    for (name, pid) in &pids {
        eprintln!("  {name:<20} pid {pid}");
    }
    if args.detach {
        let doc = json!({ "hub_url": hub_url, "pids": pids.iter().map(|(n, p)| json!({"name": n, "pid": p})).collect::<Vec<_>>() });
        std::fs::write(pid_file(&data_dir), doc.to_string())
            .map_err(|e| GzError::new(ErrorCode::StoreFailed, e.to_string()))?;
        suite.detach();
        return Ok(0);
    }
    eprintln!("press Ctrl-C to stop");
    let stop = Shutdown::from_future(gleitzeit_runtime::signal_shutdown());
    tokio::select! {
        _ = stop.wait() => {}
        name = suite.any_exit() => eprintln!("{name} exited; stopping the suite"),
    }
    suite.shutdown().await;
    Ok(0)
}

/// `gz stop`.
pub async fn stop(hub_url: &str) -> CmdResult {
    let asked = request_shutdown(hub_url).await;
    let file = pid_file(&default_data_dir());
    let recorded: Vec<u32> = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("pids").cloned())
        .and_then(|p| p.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.get("pid").and_then(|p| p.as_u64()).map(|p| p as u32))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && recorded.iter().any(|p| ours_alive(*p)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pid in recorded.iter().filter(|p| ours_alive(**p)) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let _ = std::fs::remove_file(&file);
    match asked {
        Ok(()) => {
            eprintln!("gleitzeit suite at {hub_url} stopped");
            Ok(0)
        }
        Err(_) if !recorded.is_empty() => {
            eprintln!("hub did not answer; stopped the recorded processes");
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// True when `pid` is alive and is one of our binaries (a reused pid is left alone).
fn ours_alive(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("central-hub") || SERVICES.iter().any(|s| c.contains(s))
        })
        .unwrap_or(false)
}

/// `gz hub`: the hub in the foreground.
pub async fn hub(hub_url: &str, log_format: LogFormat, args: HubArgs) -> CmdResult {
    gleitzeit_runtime::init_tracing(log_format);
    let (host, port) = host_port(hub_url)?;
    let tls = central_hub::TlsFiles::from_flags(args.tls_cert, args.tls_key)
        .map_err(|e| e.to_gz_error())?;
    let config = central_hub::HubConfig {
        tls,
        host: args.host.unwrap_or(host),
        port: args.port.unwrap_or(port),
        mesh_redis_url: args.redis_url,
        auth: args.auth,
        insecure_no_auth: args.insecure_no_auth,
        data_dir: args.data_dir,
        allowed_origins: args.allowed_origins,
        ..Default::default()
    };
    let config = match args.hub_id {
        Some(hub_id) => central_hub::HubConfig { hub_id, ..config },
        None => config,
    };
    central_hub::run(
        config,
        Shutdown::from_future(gleitzeit_runtime::signal_shutdown()),
    )
    .await
    .map_err(|e| match e {
        central_hub::HubError::Tls(tls) => tls.to_gz_error(),
        other => GzError::new(ErrorCode::Internal, other.to_string()),
    })?;
    Ok(0)
}
