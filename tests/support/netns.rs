//! A network of "hosts" made of Linux network namespaces, for tests of the suite across
//! machines without containers: every host is a namespace of its own with one interface
//! (`eth0`, an address of the lab's private /24), plugged into a bridge that lives in a
//! "switch" namespace of its own. [`Lab::unplug`] sets a host's switch port down (the cable
//! pulled), [`Lab::plug`] up again.
//!
//! Processes are started inside a host with `ip netns exec NS BINARY …` (which execs the
//! binary: the pid is the binary's) and stopped by that pid. Dropping the [`Lab`] kills
//! every process it started, then deletes every namespace it made, even when a test fails;
//! namespaces left by an earlier test process that was killed outright (its pid is gone)
//! are deleted when the next lab is made. Only names starting with [`PREFIX`] are touched.
//!
//! Needs root and a kernel with network namespaces, veth and bridges: [`Lab::unavailable`]
//! says why not, so a test can skip with that reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use gleitzeit_launcher::{process::log_path, Launch, Process};

use crate::bin_dir;

/// Every namespace a lab makes is called `gzns-<test pid>-<lab>-<host>`.
pub const PREFIX: &str = "gzns-";

/// One host of the lab.
#[derive(Debug, Clone)]
struct Host {
    ns: String,
    ip: String,
    port: String,
}

/// Namespaces, links and the processes started in them; all removed on drop.
pub struct Lab {
    prefix: String,
    switch: String,
    hosts: BTreeMap<String, Host>,
    made: Vec<String>,
    procs: BTreeMap<String, Process>,
}

/// Runs `ip ARGS`; the error names the command and what `ip` printed.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("`ip` cannot be run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The effective uid of this process, from `/proc/self/status`.
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

impl Lab {
    /// Why a lab cannot be made on this machine (not root, no `ip`, no namespaces, no veth
    /// or bridge), or None when it can.
    pub fn unavailable() -> Option<String> {
        match euid() {
            Some(0) => {}
            Some(uid) => return Some(format!("needs root (running as uid {uid})")),
            None => return Some("cannot tell the user id (/proc/self/status)".into()),
        }
        let probe = format!("{PREFIX}{}-probe", std::process::id());
        let tried = (|| {
            ip(&["netns", "add", &probe])?;
            ip(&[
                "-n", &probe, "link", "add", "name", "gzbr", "type", "bridge",
            ])?;
            ip(&[
                "-n", &probe, "link", "add", "gzp0", "type", "veth", "peer", "name", "gzp1",
            ])?;
            ip(&["-n", &probe, "link", "set", "gzp0", "master", "gzbr"])
        })();
        let _ = ip(&["netns", "del", &probe]);
        tried
            .err()
            .map(|e| format!("`ip netns` does not work here: {e}"))
    }

    /// Makes the switch and one namespace per host in `hosts` (short names, at most 8
    /// characters), host `i` at `10.77.<n>.<10 + i>/24`.
    pub fn create(hosts: &[&str]) -> Result<Lab, String> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale_namespaces();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{PREFIX}{}-{n}", std::process::id());
        let subnet = format!("10.77.{}", (std::process::id() + n) % 250);
        let mut lab = Lab {
            switch: format!("{prefix}-switch"),
            prefix,
            hosts: BTreeMap::new(),
            made: Vec::new(),
            procs: BTreeMap::new(),
        };
        let sw = lab.switch.clone();
        lab.add_namespace(&sw)?;
        ip(&["-n", &sw, "link", "add", "name", "gzbr", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "gzbr", "up"])?;
        for (i, name) in hosts.iter().enumerate() {
            assert!(name.len() <= 8, "host name {name} longer than 8 characters");
            let host = Host {
                ns: format!("{}-{name}", lab.prefix),
                ip: format!("{subnet}.{}", 10 + i),
                port: format!("p-{name}"),
            };
            lab.add_namespace(&host.ns)?;
            ip(&[
                "-n", &sw, "link", "add", &host.port, "type", "veth", "peer", "name", "eth0",
                "netns", &host.ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &host.port, "master", "gzbr"])?;
            ip(&["-n", &sw, "link", "set", &host.port, "up"])?;
            let cidr = format!("{}/24", host.ip);
            ip(&["-n", &host.ns, "addr", "add", &cidr, "dev", "eth0"])?;
            ip(&["-n", &host.ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host.ns, "link", "set", "lo", "up"])?;
            lab.hosts.insert(name.to_string(), host);
        }
        Ok(lab)
    }

    fn add_namespace(&mut self, ns: &str) -> Result<(), String> {
        ip(&["netns", "add", ns])?;
        self.made.push(ns.to_string());
        Ok(())
    }

    fn host(&self, name: &str) -> &Host {
        self.hosts
            .get(name)
            .unwrap_or_else(|| panic!("no host {name} in the lab"))
    }

    /// The namespace of host `name`.
    pub fn ns(&self, name: &str) -> &str {
        &self.host(name).ns
    }

    /// The address of host `name`.
    pub fn ip(&self, name: &str) -> &str {
        &self.host(name).ip
    }

    /// Pulls host `name`'s cable: its port on the switch goes down (so does its carrier).
    pub fn unplug(&self, name: &str) {
        let port = &self.host(name).port;
        ip(&["-n", &self.switch, "link", "set", port, "down"]).expect("port down");
    }

    /// Plugs host `name`'s cable in again.
    pub fn plug(&self, name: &str) {
        let port = &self.host(name).port;
        ip(&["-n", &self.switch, "link", "set", port, "up"]).expect("port up");
    }

    /// A launch of the workspace binary `binary` inside host `host`, called `id`, logging
    /// into `target/<profile>/e2e-logs/`: `ip netns exec NS BINARY`.
    pub fn launch(&self, host: &str, id: &str, binary: &str) -> Launch {
        let log = log_path(&bin_dir().join("e2e-logs"), &format!("netns-{id}"));
        Launch::new(id, "ip", log)
            .args(["netns", "exec", self.ns(host)])
            .arg(crate::bin(binary))
    }

    /// A command running the workspace binary `binary` inside host `host`.
    pub fn command(&self, host: &str, binary: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(host)])
            .arg(crate::bin(binary));
        cmd
    }

    /// Starts `launch` and keeps it as `id` (killed on drop, or by [`Lab::kill`]).
    pub fn spawn(&mut self, id: &str, launch: Launch) -> &mut Process {
        let proc = launch.spawn().unwrap_or_else(|e| panic!("{e}"));
        self.procs.insert(id.to_string(), proc);
        self.procs.get_mut(id).expect("just inserted")
    }

    /// The process kept as `id`.
    pub fn process(&mut self, id: &str) -> &mut Process {
        self.procs
            .get_mut(id)
            .unwrap_or_else(|| panic!("no process {id}"))
    }

    /// The log file of every process, for a failure message.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.procs.values().map(|p| p.log().to_path_buf()).collect()
    }

    /// The namespaces this lab made (and deletes on drop).
    pub fn namespaces(&self) -> &[String] {
        &self.made
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes first (SIGKILL by pid, reaped), then the namespaces they lived in.
        for proc in self.procs.values_mut() {
            proc.kill();
        }
        self.procs.clear();
        for ns in self.made.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Deletes namespaces named by a lab of a test process that no longer runs.
fn remove_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = owner {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                // What that test started in it may still run: stopped by pid, then removed.
                let pids = ip(&["netns", "pids", name]).unwrap_or_default();
                for pid in pids.split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}
