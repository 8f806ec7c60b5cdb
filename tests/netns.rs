//! The suite across hosts without containers: the hub, the queue-manager, the resolver, the
//! engine, two python-providers and the client each in a network namespace of their own,
//! plugged into one bridge (a "switch" namespace) on a private /24 that the test makes. The
//! hub serves HTTPS/WSS with a certificate for its lab address, signed by a CA made here;
//! every service presents its own SERVICE key from a key file (`GLEITZEIT_API_KEY_FILE`),
//! the client a USER key.
//!
//! One test, three acts: a workflow completes across the namespaces; one provider's host is
//! unplugged (its switch port set down) while it runs tasks, and those tasks finish on the
//! other provider with exactly one result each; the cable goes back in and the provider
//! reconnects and takes work again.
//!
//! Needs root and `ip netns`; without them it prints why and passes (skipped). Everything it
//! made (processes by pid, namespaces by name) is removed when it ends, also on failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gleitzeit_auth::KeyStore;
use gleitzeit_e2e::netns::Lab;
use gleitzeit_e2e::{bin, temp_path};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;

/// The lab's hosts: one namespace each.
const HOSTS: [&str; 7] = ["hub", "qm", "dr", "ee", "pya", "pyb", "client"];

/// The hub's port: fixed, since the hub's namespace is the test's own.
const HUB_PORT: u16 = 8443;

/// Making the lab and starting the suite must end within this, and the three acts within
/// [`ACTS_WITHIN`]: the whole test within 2 minutes.
const START_WITHIN: Duration = Duration::from_secs(40);
const ACTS_WITHIN: Duration = Duration::from_secs(75);

/// A folder removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running suite in the lab. Field order matters: the lab (processes, then namespaces)
/// goes before the folder its processes write into.
struct Cluster {
    lab: Lab,
    dir: TempDir,
    url: String,
    ca: PathBuf,
    user_key: String,
}

/// A CA and a hub certificate for `hub_ip` (an IP SAN), as PEM files in `dir`:
/// (ca, cert, key).
fn make_pki(dir: &Path, hub_ip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Gleitzeit netns test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let hub_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![hub_ip.to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "gleitzeit hub");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let hub_cert = params.signed_by(&hub_key, &issuer).unwrap();

    let files = (dir.join("ca.pem"), dir.join("hub.pem"), dir.join("hub.key"));
    std::fs::write(&files.0, ca_cert.pem()).unwrap();
    std::fs::write(&files.1, hub_cert.pem()).unwrap();
    std::fs::write(&files.2, hub_key.serialize_pem()).unwrap();
    files
}

/// A SERVICE user `name` whose key may register only as `types`, written to a key file
/// (mode 0600) in `dir`; its path.
fn service_key_file(store: &KeyStore, dir: &Path, name: &str, types: &[&str]) -> PathBuf {
    store
        .create_user(name, "service".parse().expect("role"))
        .expect("user");
    let key = store
        .create_key(
            "netns",
            name,
            None,
            types.iter().map(|t| t.to_string()).collect(),
        )
        .expect("key")
        .secret;
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

impl Cluster {
    /// Makes the lab and starts the suite in it; None (with the reason printed) when this
    /// machine cannot make namespaces.
    async fn start() -> Option<Cluster> {
        if let Some(why) = Lab::unavailable() {
            eprintln!("SKIPPED tests/netns.rs: {why}");
            return None;
        }
        let lab = Lab::create(&HOSTS).unwrap_or_else(|e| panic!("the lab cannot be made: {e}"));
        let dir = TempDir(temp_path("netns"));
        std::fs::create_dir_all(&dir.0).unwrap();
        let hub_ip = lab.ip("hub").to_string();
        let (ca, cert, key) = make_pki(&dir.0, &hub_ip);

        // The hub's key store: what `gz auth` would make on the hub machine.
        let hub_data = dir.0.join("hub-data");
        let store = KeyStore::open_dir(&hub_data).expect("key store");
        store.init("admin").expect("first admin");
        let infra = service_key_file(
            &store,
            &dir.0,
            "infra",
            &["queue-manager", "dependency-resolver", "execution-engine"],
        );
        let host_a = service_key_file(&store, &dir.0, "host-pya", &["python-provider"]);
        let host_b = service_key_file(&store, &dir.0, "host-pyb", &["python-provider"]);
        store
            .create_user("alice", "user".parse().expect("role"))
            .expect("user");
        let user_key = store
            .create_key("netns", "alice", None, vec![])
            .expect("key")
            .secret;
        drop(store);

        let url = format!("https://{hub_ip}:{HUB_PORT}");
        let mut cluster = Cluster {
            lab,
            dir,
            url,
            ca,
            user_key,
        };
        let ready = cluster.dir.0.join("hub.ready");
        let hub = cluster
            .lab
            .launch("hub", "central-hub", "central-hub")
            .args(["--host", &hub_ip, "--port", &HUB_PORT.to_string()])
            .arg("--data-dir")
            .arg(&hub_data)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .args(["--heartbeat-interval", "0.3", "--heartbeat-timeout", "1.5"])
            .env_remove("GLEITZEIT_API_KEY")
            .env("GLEITZEIT_LOG_LEVEL", "info");
        let hub = cluster.lab.spawn("central-hub", hub);
        gleitzeit_launcher::wait_ready_file(hub, &ready, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let qm_data = cluster.dir.0.join("qm-data").display().to_string();
        cluster.service(
            "qm",
            "queue-manager",
            "qm-1",
            &infra,
            &["--data-dir", &qm_data],
        );
        cluster.service("dr", "dependency-resolver", "dr-1", &infra, &[]);
        cluster.service("ee", "execution-engine", "ee-1", &infra, &[]);
        for (host, id, key) in [("pya", "py-a", &host_a), ("pyb", "py-b", &host_b)] {
            let data = cluster
                .dir
                .0
                .join(format!("{id}-data"))
                .display()
                .to_string();
            cluster.service(
                host,
                "python-provider",
                id,
                key,
                &["--workers", "2", "--data-dir", &data],
            );
        }
        cluster
            .wait_components(Duration::from_secs(30), |ids| {
                ["qm-1", "dr-1", "ee-1", "py-a", "py-b"]
                    .iter()
                    .all(|id| ids.contains(*id))
            })
            .await;
        Some(cluster)
    }

    /// Starts service `binary` as component `id` in host `host`, with its key file.
    fn service(&mut self, host: &str, binary: &str, id: &str, key_file: &Path, args: &[&str]) {
        let launch = self
            .lab
            .launch(host, id, binary)
            .args(args)
            .env_remove("GLEITZEIT_API_KEY")
            .env("GLEITZEIT_API_KEY_FILE", key_file)
            .env("GLEITZEIT_TLS_CA", &self.ca)
            .env("GLEITZEIT_HUB_URL", &self.url)
            .env("GLEITZEIT_COMPONENT_ID", id)
            .env("GLEITZEIT_LOG_LEVEL", "info")
            // Lets a task tell which host ran it.
            .env("GZ_NETNS_HOST", host);
        self.lab.spawn(id, launch);
    }

    /// `gz --hub-url URL ARGS` in the client's namespace, as alice (at most 30 s):
    /// (exit code, stdout, stderr).
    fn gz(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", self.lab.ns("client"), "timeout", "30"])
            .arg(bin("gz"))
            .arg("--hub-url")
            .arg(&self.url)
            .args(args)
            .env_remove("GLEITZEIT_API_KEY_FILE")
            .env("GLEITZEIT_API_KEY", &self.user_key)
            .env("GLEITZEIT_TLS_CA", &self.ca)
            .current_dir(&self.dir.0)
            .output()
            .expect("gz runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// The ids of the components the hub lists (`gz status --json` from the client).
    fn component_ids(&self) -> BTreeSet<String> {
        let (_, out, _) = self.gz(&["status", "--json"]);
        let doc: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let mut ids = BTreeSet::new();
        collect_strings(&doc["components"], "component_id", &mut ids);
        ids
    }

    /// Polls the component list until `cond` holds; panics with the logs after `limit`.
    async fn wait_components(&self, limit: Duration, cond: impl Fn(&BTreeSet<String>) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            let ids = self.component_ids();
            if cond(&ids) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "components {ids:?} after {limit:?}; logs: {:?}",
                self.lab.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes a workflow file into the test folder; its path.
    fn workflow(&self, name: &str, yaml: &str) -> String {
        let path = self.dir.0.join(name);
        std::fs::write(&path, yaml).unwrap();
        path.display().to_string()
    }

    /// `gz submit FILE --json`: the workflow id.
    fn submit(&self, file: &str) -> String {
        let (code, out, err) = self.gz(&["submit", file, "--json"]);
        assert_eq!(code, 0, "gz submit failed: {out}{err}");
        let doc: Value = serde_json::from_str(&out).expect("submit prints JSON");
        doc["workflow_id"]
            .as_str()
            .expect("workflow id")
            .to_string()
    }

    /// Polls `gz inspect workflow ID --json` until the workflow is finished.
    async fn wait_finished(&self, id: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (_, out, _) = self.gz(&["inspect", "workflow", id, "--json"]);
            if let Ok(doc) = serde_json::from_str::<Value>(&out) {
                if matches!(
                    doc["workflow"]["status"].as_str(),
                    Some("completed" | "failed" | "cancelled")
                ) {
                    return doc;
                }
            }
            assert!(
                Instant::now() < deadline,
                "workflow {id} did not finish within {limit:?}: {out}; logs: {:?}",
                self.lab.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// How many `task_completed` events each task of the workflow has.
    fn completions(&self, id: &str) -> BTreeMap<String, usize> {
        let (code, out, err) = self.gz(&["events", "--workflow", id, "--json"]);
        assert_eq!(code, 0, "gz events failed: {out}{err}");
        let mut counts = BTreeMap::new();
        for line in out.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if event["event"] == "task_completed" {
                let task = event["payload"]["task_id"].as_str().unwrap_or_default();
                *counts.entry(task.to_string()).or_default() += 1;
            }
        }
        counts
    }
}

/// Every string found under the key `key` anywhere in `value`.
fn collect_strings(value: &Value, key: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k == key => {
                        out.insert(s.clone());
                    }
                    _ => collect_strings(v, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, key, out)),
        _ => {}
    }
}

/// A workflow of `chains` chains of `len` Python tasks `<prefix><c>_<k>`; each appends
/// `start <id> <host>` to `log`, sleeps `sleep` seconds and returns the host that ran it.
fn host_tasks_yaml(prefix: &str, chains: usize, len: usize, sleep: f64, log: &Path) -> String {
    let mut yaml = format!("name: {prefix}netns\ntasks:\n");
    for c in 0..chains {
        for k in 0..len {
            let id = format!("{prefix}{c}_{k}");
            yaml.push_str(&format!("  - id: {id}\n    method: python/execute\n"));
            if k > 0 {
                yaml.push_str(&format!("    dependencies: [{prefix}{c}_{}]\n", k - 1));
            }
            yaml.push_str(&format!(
                "    parameters:\n      code: |\n        import os, time\n        host = os.environ.get(\"GZ_NETNS_HOST\", \"?\")\n        with open(\"{log}\", \"a\") as f:\n            f.write(\"start {id} \" + host + \"\\n\")\n        time.sleep({sleep})\n        result = {{\"host\": host, \"step\": {k}}}\n",
                log = log.display()
            ));
        }
    }
    yaml
}

/// The hosts each task was started on, from the log of [`host_tasks_yaml`].
fn starts(log: &Path) -> BTreeMap<String, Vec<String>> {
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let mut words = line.split_whitespace().skip(1);
        if let (Some(id), Some(host)) = (words.next(), words.next()) {
            runs.entry(id.to_string())
                .or_default()
                .push(host.to_string());
        }
    }
    runs
}

/// The tasks of an inspected workflow by id.
fn tasks_of(doc: &Value) -> BTreeMap<String, Value> {
    doc["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let id = t["task_id"]
                .as_str()
                .or(t["id"].as_str())
                .unwrap_or_default();
            (id.to_string(), t)
        })
        .collect()
}

/// Asserts that every task completed with one result, recorded from the provider that the
/// result says ran it; returns the provider of each task.
fn assert_one_result_each(
    cluster: &Cluster,
    id: &str,
    doc: &Value,
    n: usize,
) -> BTreeMap<String, String> {
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    let tasks = tasks_of(doc);
    assert_eq!(tasks.len(), n, "{doc:#}");
    let completions = cluster.completions(id);
    let mut providers = BTreeMap::new();
    for (task_id, task) in &tasks {
        assert_eq!(task["status"], "completed", "{task:#}");
        assert_eq!(
            completions.get(task_id).copied(),
            Some(1),
            "{task_id} must complete exactly once: {completions:?}"
        );
        let provider = task["provider_id"].as_str().unwrap_or_default().to_string();
        let host = task["result"]["result"]["host"]
            .as_str()
            .unwrap_or_default();
        let expected = match host {
            "pya" => "py-a",
            "pyb" => "py-b",
            other => panic!("{task_id} ran on an unknown host {other:?}: {task:#}"),
        };
        assert_eq!(
            provider, expected,
            "the result and the record agree: {task:#}"
        );
        providers.insert(task_id.clone(), provider);
    }
    providers
}

const SQUARES: &str = r#"
name: squares across namespaces
tasks:
  - id: square
    method: python/execute
    parameters: { code: "result = 7 * 7" }
  - id: report
    method: python/execute
    dependencies: [square]
    parameters:
      context: { n: "${square.result}" }
      code: "result = f\"square is {context['n']}\""
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_run_across_hosts_survive_an_unplugged_provider_and_a_healed_link() {
    let started = Instant::now();
    let started_in_time = tokio::time::timeout(START_WITHIN, Cluster::start()).await;
    let Some(cluster) = started_in_time
        .unwrap_or_else(|_| panic!("the lab and the suite did not start within {START_WITHIN:?}"))
    else {
        return;
    };
    eprintln!(
        "lab up in {:?}: namespaces {:?}, hub {}",
        started.elapsed(),
        cluster.lab.namespaces(),
        cluster.url
    );
    tokio::time::timeout(ACTS_WITHIN, three_acts(&cluster))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the three acts did not end within {ACTS_WITHIN:?}; logs: {:?}",
                cluster.lab.logs()
            )
        });
    eprintln!("done in {:?}", started.elapsed());
}

async fn three_acts(cluster: &Cluster) {
    // 1. A workflow across the namespaces, over TLS, every process with its own key.
    let t = Instant::now();
    let file = cluster.workflow("squares.yaml", SQUARES);
    let (code, out, err) = cluster.gz(&["run", &file, "--json"]);
    assert_eq!(code, 0, "gz run across namespaces failed: {out}{err}");
    let doc: Value = serde_json::from_str(&out).expect("gz run --json prints JSON");
    assert_eq!(doc["status"], "completed", "{doc:#}");
    let report = tasks_of(&doc).remove("report").expect("report task");
    assert_eq!(report["result"]["result"], "square is 49", "{doc:#}");
    eprintln!("act 1 (workflow across namespaces) {:?}", t.elapsed());

    // 2. pya's cable is pulled while it runs tasks: they finish on pyb, once each.
    let t = Instant::now();
    let log = cluster.dir.0.join("unplug.log");
    let (chains, len) = (8, 3);
    let file = cluster.workflow("unplug.yaml", &host_tasks_yaml("u", chains, len, 1.0, &log));
    let id = cluster.submit(&file);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !starts(&log).values().flatten().any(|h| h == "pya") {
        assert!(Instant::now() < deadline, "pya never started a task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.lab.unplug("pya");
    let on_a_at_unplug: BTreeSet<String> = starts(&log)
        .into_iter()
        .filter(|(_, hosts)| hosts.iter().any(|h| h == "pya"))
        .map(|(task, _)| task)
        .collect();
    cluster
        .wait_components(Duration::from_secs(10), |ids| !ids.contains("py-a"))
        .await;
    let lost_after = t.elapsed();
    let doc = cluster.wait_finished(&id, Duration::from_secs(60)).await;
    let providers = assert_one_result_each(cluster, &id, &doc, chains * len);
    // The tasks pya had started when it was cut off were run again on pyb, whose results
    // are the ones recorded.
    let moved: Vec<&String> = on_a_at_unplug
        .iter()
        .filter(|task| providers.get(*task).is_some_and(|p| p == "py-b"))
        .collect();
    assert!(
        !moved.is_empty(),
        "pya's tasks {on_a_at_unplug:?} must finish on py-b: {providers:?}"
    );
    for task in &moved {
        let hosts = &starts(&log)[*task];
        assert!(hosts.iter().any(|h| h == "pyb"), "{task} ran on {hosts:?}");
    }
    eprintln!(
        "act 2 (unplugged): py-a gone from the hub after {lost_after:?}, {} task(s) moved to py-b, workflow done in {:?}",
        moved.len(),
        t.elapsed()
    );

    // 3. The cable goes back in: pya reconnects, takes work again, and its late results for
    // the tasks pyb finished are not recorded a second time.
    let t = Instant::now();
    cluster.lab.plug("pya");
    cluster
        .wait_components(Duration::from_secs(30), |ids| ids.contains("py-a"))
        .await;
    let back_after = t.elapsed();
    let again = cluster.completions(&id);
    assert!(again.values().all(|n| *n == 1), "{again:?}");

    let log = cluster.dir.0.join("healed.log");
    let file = cluster.workflow("healed.yaml", &host_tasks_yaml("h", 8, 1, 0.6, &log));
    let id = cluster.submit(&file);
    let doc = cluster.wait_finished(&id, Duration::from_secs(30)).await;
    let providers = assert_one_result_each(cluster, &id, &doc, 8);
    assert!(
        providers.values().any(|p| p == "py-a"),
        "py-a takes work again after the link healed: {providers:?}"
    );
    eprintln!(
        "act 3 (healed): py-a registered again after {back_after:?}, ran {} of 8 tasks; {:?}",
        providers.values().filter(|p| *p == "py-a").count(),
        t.elapsed()
    );
}
