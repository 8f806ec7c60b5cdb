//! Starting and stopping the local suite: the hub and one of each service as child
//! processes, found beside the `gz` executable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::HubStatus;
use gleitzeit_protocol::{events, Target};
use gleitzeit_runtime::{LogFormat, Shutdown};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::status::get_json;
use crate::CmdResult;

/// The services `gz start` launches, in start order.
pub const SERVICES: &[&str] = &[
    "queue-manager",
    "dependency-resolver",
    "execution-engine",
    "python-provider",
    "ollama-provider",
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

pub(crate) fn binary(name: &str) -> Result<PathBuf, GzError> {
    let exe =
        std::env::current_exe().map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?;
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(GzError::new(
            ErrorCode::FileNotFound,
            format!("{} not found beside gz", path.display()),
        )
        .with_hint("build every binary: `cargo build --release --bins` (or `cargo build --bins`)"))
    }
}

/// A running local suite. Children are killed when it is dropped, unless detached.
pub struct LocalSuite {
    children: Vec<(String, Child)>,
    hub_url: String,
    env: Vec<(String, String)>,
    data_dir: PathBuf,
    format: &'static str,
}

impl LocalSuite {
    /// Starts the hub and every service; returns once the hub is healthy.
    pub async fn start(
        hub_url: &str,
        data_dir: &Path,
        log_format: LogFormat,
        detach: bool,
    ) -> Result<LocalSuite, GzError> {
        Self::start_with(hub_url, data_dir, log_format, detach, &[]).await
    }

    /// Like [`LocalSuite::start`], with extra environment variables for every child.
    pub async fn start_with(
        hub_url: &str,
        data_dir: &Path,
        log_format: LogFormat,
        detach: bool,
        env: &[(&str, String)],
    ) -> Result<LocalSuite, GzError> {
        let (host, port) = host_port(hub_url)?;
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
        let mut env: Vec<(&str, String)> = env.to_vec();
        env.push((gleitzeit_runtime::credentials::API_KEY_ENV, key));
        let env = env.as_slice();
        let logs = data_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| {
            GzError::new(
                ErrorCode::StoreFailed,
                format!("cannot create {}: {e}", logs.display()),
            )
        })?;
        let format = match log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let mut suite = LocalSuite {
            children: Vec::new(),
            hub_url: hub_url.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            data_dir: data_dir.to_path_buf(),
            format,
        };
        let mut hub = Command::new(binary("central-hub")?);
        hub.args(["--host", &host, "--port", &port.to_string()]);
        suite.spawn("central-hub", &mut hub, &logs, format, data_dir, detach)?;
        wait_healthy(hub_url, Duration::from_secs(15)).await?;
        for name in SERVICES {
            let mut cmd = Command::new(binary(name)?);
            suite.spawn(name, &mut cmd, &logs, format, data_dir, detach)?;
        }
        Ok(suite)
    }

    fn spawn(
        &mut self,
        name: &str,
        cmd: &mut Command,
        logs: &Path,
        format: &str,
        data_dir: &Path,
        detach: bool,
    ) -> Result<(), GzError> {
        let log_path = logs.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| {
            GzError::new(
                ErrorCode::StoreFailed,
                format!("cannot create {}: {e}", log_path.display()),
            )
        })?;
        let err_log = log
            .try_clone()
            .map_err(|e| GzError::new(ErrorCode::StoreFailed, e.to_string()))?;
        cmd.env("GLEITZEIT_HUB_URL", &self.hub_url)
            .env("GLEITZEIT_LOG_FORMAT", format)
            .env("GLEITZEIT_DATA_DIR", data_dir)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .kill_on_drop(!detach);
        if detach {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .map_err(|e| GzError::new(ErrorCode::Internal, format!("cannot start {name}: {e}")))?;
        self.children.push((name.to_string(), child));
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
        let mut cmd = Command::new(binary(binary_name)?);
        cmd.env("GLEITZEIT_COMPONENT_ID", instance);
        self.spawn_extra(instance, cmd, hub_url)
    }

    /// Starts another hub on `port` with the id `hub_id` (it joins the mesh when the
    /// suite's environment names one with `GLEITZEIT_HUB_REDIS_URL`).
    pub fn add_hub(&mut self, port: u16, hub_id: &str) -> Result<(), GzError> {
        let mut cmd = Command::new(binary("central-hub")?);
        cmd.args(["--port", &port.to_string(), "--hub-id", hub_id]);
        self.spawn_extra(hub_id, cmd, None)
    }

    fn spawn_extra(
        &mut self,
        name: &str,
        mut cmd: Command,
        hub_url: Option<&str>,
    ) -> Result<(), GzError> {
        let (data_dir, format) = (self.data_dir.clone(), self.format);
        let logs = data_dir.join("logs");
        let own = self.hub_url.clone();
        if let Some(url) = hub_url {
            self.hub_url = url.to_string();
        }
        let spawned = self.spawn(name, &mut cmd, &logs, format, &data_dir, false);
        self.hub_url = own;
        spawned
    }

    /// Kills one child by name (benchmarks rearranging the suite).
    pub async fn kill(&mut self, name: &str) {
        if let Some(pos) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(pos);
            let _ = child.kill().await;
        }
    }

    /// Process ids of the children.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.children
            .iter()
            .filter_map(|(n, c)| c.id().map(|p| (n.clone(), p)))
            .collect()
    }

    /// Asks the hub to stop everything, then kills what is left after a grace period.
    pub async fn shutdown(mut self) {
        let _ = request_shutdown(&self.hub_url).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }

    /// Waits until any child exits; returns its name.
    pub async fn any_exit(&mut self) -> String {
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(_)) = child.try_wait() {
                    return name.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Polls `/health` until it answers.
pub async fn wait_healthy(hub_url: &str, limit: Duration) -> Result<HubStatus, GzError> {
    let start = Instant::now();
    loop {
        match get_json::<HubStatus>(hub_url, "/health").await {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() >= limit || e.code.starts_with("GZ4") => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
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
        std::mem::forget(suite);
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
