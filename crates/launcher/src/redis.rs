//! A `redis-server` of a test's own. Redis cannot listen on port 0 and report it, so a port
//! is picked (one the kernel just handed out), and a server that exits before it is ready
//! (most likely: the port was taken meanwhile) is started again on another. Ready means it
//! answers `PING` and `INFO persistence` says `loading:0` (an append-only file is loaded).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::log_path;
use crate::{Launch, LaunchError, Process};

/// How many ports are tried before giving up.
const ATTEMPTS: usize = 5;
/// How long one start may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `redis-server` on 127.0.0.1, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    process: Process,
    port: u16,
    args: Vec<String>,
    log_dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server ARGS` on a port of its own, logging into `log_dir`.
    pub fn start(args: &[&str], log_dir: &Path) -> Result<RedisServer, LaunchError> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match Self::start_on(unused_port(), args, log_dir) {
                Ok(server) => return Ok(server),
                Err(e @ LaunchError::Exited { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(LaunchError::Missing {
            path: PathBuf::from("redis-server"),
        }))
    }

    /// Starts `redis-server ARGS` on `port` (a restart that keeps its URL).
    pub fn start_on(port: u16, args: &[&str], log_dir: &Path) -> Result<RedisServer, LaunchError> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let process = spawn(port, &args, log_dir)?;
        let mut server = RedisServer {
            process,
            port,
            args,
            log_dir: log_dir.to_path_buf(),
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process (to freeze, thaw, terminate or kill it).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Starts it again on the same port with the same arguments (after it was stopped).
    pub fn start_again(&mut self) -> Result<(), LaunchError> {
        self.process.kill();
        self.process = spawn(self.port, &self.args, &self.log_dir)?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<(), LaunchError> {
        let password = self
            .args
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.args.get(i + 1))
            .cloned();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.process.try_status() {
                return Err(LaunchError::Exited {
                    name: self.process.name().to_string(),
                    status: status.to_string(),
                    log: self.process.log().to_path_buf(),
                    tail: self.process.log_tail(20),
                });
            }
            if answers(self.port, password.as_deref()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::NotReady {
                    name: self.process.name().to_string(),
                    limit: READY_WITHIN,
                    log: self.process.log().to_path_buf(),
                    tail: self.process.log_tail(20),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn spawn(port: u16, args: &[String], log_dir: &Path) -> Result<Process, LaunchError> {
    Launch::new("redis-server", "redis-server", log_path(log_dir, "redis"))
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .spawn()
}

/// A port the kernel just handed out on 127.0.0.1 (free unless someone takes it first):
/// for servers that cannot bind port 0 themselves, and for tests that need an address
/// nothing listens on.
pub fn unused_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// True when the server on `port` answers `PING` and has loaded its data.
fn answers(port: u16, password: Option<&str>) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let Ok(mut writer) = stream.try_clone() else {
        return false;
    };
    let mut reader = BufReader::new(stream);
    if let Some(pw) = password {
        if command(&mut writer, &mut reader, &["AUTH", pw]).as_deref() != Some("+OK") {
            return false;
        }
    }
    if command(&mut writer, &mut reader, &["PING"]).as_deref() != Some("+PONG") {
        return false;
    }
    let Some(header) = command(&mut writer, &mut reader, &["INFO", "persistence"]) else {
        return false;
    };
    let Some(len) = header
        .strip_prefix('$')
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return false;
    };
    let mut body = vec![0; len];
    reader.read_exact(&mut body).is_ok()
        && String::from_utf8_lossy(&body)
            .lines()
            .any(|l| l.trim() == "loading:0")
}

/// Sends one command; the first line of the answer.
fn command(writer: &mut TcpStream, reader: &mut impl BufRead, args: &[&str]) -> Option<String> {
    let mut frame = format!("*{}\r\n", args.len());
    for a in args {
        frame.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    writer.write_all(frame.as_bytes()).ok()?;
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    Some(line.trim_end().to_string())
}
