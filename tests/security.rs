//! Identity and authorisation with real processes: each attack of the security issue, now
//! refused. Keys are checked at connect time, every event by role, target and ownership,
//! browsers by origin, and credentials never leave the hub.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use gleitzeit_e2e::{
    bin, gz_at, launch, wait_for, workflow_file, LlmSim, Proc, SuiteOptions, TestHub, TestSuite,
};
use gleitzeit_hub_client::{ClientConfig, HubClient, Incoming};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::payloads::RegisterPayload;
use gleitzeit_protocol::{GzError, Target};
use serde_json::{json, Value};

/// A client presenting `key` (or nothing).
async fn connect(url: &str, key: Option<&str>) -> Result<(HubClient, Incoming), GzError> {
    let mut config = ClientConfig::client(url);
    config.auth = key.map(|k| json!({ "api_key": k }));
    HubClient::connect(config).await.map_err(GzError::from)
}

/// A component registering as `kind` with `key`.
async fn register(url: &str, key: &str, kind: &str, id: &str) -> Result<HubClient, GzError> {
    let reg = RegisterPayload {
        component_type: kind.into(),
        component_id: id.into(),
        capabilities: vec!["python/execute".into()],
        capacity: 1,
        load: 0,
        version: "test".into(),
        host: "localhost".into(),
        pid: std::process::id(),
        metadata: Value::Null,
    };
    let mut config = ClientConfig::component(url, reg);
    config.auth = Some(json!({ "api_key": key }));
    config.initial_connect_timeout = Some(Duration::from_secs(3));
    HubClient::connect(config)
        .await
        .map(|(c, _)| c)
        .map_err(GzError::from)
}

async fn status_of(url: &str, path: &str, key: Option<&str>, origin: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(format!("{url}{path}"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    req.timeout(Duration::from_secs(3))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// A hub on a port of its own whose key store is the one `gz auth init` wrote in `dir`;
/// the process and its URL.
async fn hub_with_key_store(dir: &std::path::Path) -> (Proc, String) {
    let ready = dir.join("hub.ready");
    let _ = std::fs::remove_file(&ready);
    let mut hub = launch("central-hub-keys", "central-hub")
        .args(["--port", "0", "--data-dir"])
        .arg(dir)
        .arg("--ready-file")
        .arg(&ready)
        .spawn()
        .expect("hub starts");
    let addr = gleitzeit_launcher::wait_ready_file(&mut hub, &ready, Duration::from_secs(20))
        .await
        .expect("hub listens");
    (hub, format!("http://{addr}"))
}

const SLEEPY: &str = "name: sleepy\ntasks:\n  - id: nap\n    method: python/execute\n    parameters:\n      code: |\n        import time\n        time.sleep(2)\n        result = 'real'\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_wrong_and_revoked_keys_are_refused_with_coded_errors() {
    let hub = TestHub::start().await;
    let err = connect(&hub.url, None)
        .await
        .err()
        .expect("anonymous refused");
    assert_eq!(err.code, "GZ4001", "{err:?}");
    let bogus = format!("gzt_0123456789ab_{}", "0".repeat(64));
    let err = connect(&hub.url, Some(&bogus))
        .await
        .err()
        .expect("bogus refused");
    assert_eq!(err.code, "GZ4001");
    let err = connect(&hub.url, Some("not-a-key"))
        .await
        .err()
        .expect("junk refused");
    assert_eq!(err.code, "GZ4001");

    let key = hub.user_key("carol", "user");
    let (client, _rx) = connect(&hub.url, Some(&key))
        .await
        .expect("valid key connects");
    let id = gleitzeit_auth::parse_key(&key).unwrap().to_string();
    let (code, out, err) = gz_at(&hub.url, &["auth", "key", "revoke", &id, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    // The revoked key's connection is closed, and it cannot come back.
    wait_for(Duration::from_secs(10), || async { !client.is_connected() }).await;
    let err = connect(&hub.url, Some(&key))
        .await
        .err()
        .expect("revoked refused");
    assert_eq!(err.code, "GZ4002", "{err:?}");
    // The hub is still up for valid keys.
    assert!(connect(&hub.url, Some(&hub.key)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_need_a_key_except_the_liveness_probe() {
    let hub = TestHub::start().await;
    for path in ["/health", "/components", "/providers"] {
        assert_eq!(status_of(&hub.url, path, None, None).await, 401, "{path}");
        assert_eq!(
            status_of(&hub.url, path, Some("gzt_bad"), None).await,
            401,
            "{path}"
        );
    }
    let viewer = hub.user_key("vera", "viewer");
    assert_eq!(
        status_of(&hub.url, "/health", Some(&viewer), None).await,
        200
    );
    assert_eq!(status_of(&hub.url, "/livez", None, None).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_cannot_reach_the_hub() {
    let hub = TestHub::start().await;
    let handshake = "/socket.io/?EIO=4&transport=polling";
    assert_eq!(
        status_of(&hub.url, handshake, None, Some("https://evil.example")).await,
        403
    );
    assert_eq!(
        status_of(&hub.url, "/livez", None, Some("https://evil.example")).await,
        403
    );
    // The hub's own origin (its dashboard) and programs without an Origin pass.
    let own = format!("http://127.0.0.1:{}", hub.port);
    assert_eq!(status_of(&hub.url, handshake, None, Some(&own)).await, 200);
    assert_eq!(status_of(&hub.url, handshake, None, None).await, 200);
    // No wildcard CORS answer.
    let resp = reqwest::Client::new()
        .get(format!("{}{handshake}", hub.url))
        .header("Origin", own.as_str())
        .send()
        .await
        .unwrap();
    let acao = resp.headers().get("access-control-allow-origin");
    assert!(acao.is_none_or(|v| v != "*"), "{acao:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_allow_and_refuse_what_the_table_says() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let hub = &suite.hub;
    let alice = hub.user_key("alice", "user");
    let bob = hub.user_key("bob", "user");
    let viewer = hub.user_key("vic", "viewer");
    let operator = hub.user_key("otto", "operator");
    let spec = json!({"name": "sleepy", "tasks": [{"id": "nap", "method": "python/execute",
        "parameters": {"code": "import time\ntime.sleep(2)\nresult = 'real'"}}]});
    let qm = Target::Type("queue-manager".into());

    // A USER submits and reads its own workflow.
    let (a, _arx) = connect(&hub.url, Some(&alice)).await.unwrap();
    let submitted = a
        .request(qm.clone(), events::WORKFLOW_SUBMIT, json!({"spec": spec}))
        .await
        .expect("user submits");
    let wf = submitted["workflow_id"].as_str().unwrap().to_string();
    a.request(qm.clone(), events::WORKFLOW_GET, json!({"workflow_id": wf}))
        .await
        .expect("owner reads");
    a.subscribe(&[rooms::workflow(&wf)])
        .await
        .expect("owner watches");
    assert!(a.subscribe(&[rooms::EVENTS.to_string()]).await.is_err());

    // Another USER neither reads, watches, lists nor cancels it.
    let (b, _brx) = connect(&hub.url, Some(&bob)).await.unwrap();
    let err = b
        .request(qm.clone(), events::WORKFLOW_GET, json!({"workflow_id": wf}))
        .await
        .expect_err("other user cannot read");
    assert_eq!(err.code, "GZ4003");
    let err = b
        .subscribe(&[rooms::workflow(&wf)])
        .await
        .expect_err("no watching");
    assert_eq!(err.code, "GZ4003");
    let err = b
        .request(
            qm.clone(),
            events::WORKFLOW_CANCEL,
            json!({"workflow_id": wf}),
        )
        .await
        .expect_err("no cancelling");
    assert_eq!(err.code, "GZ4003");
    let listed = b
        .request(qm.clone(), events::WORKFLOW_LIST, json!({}))
        .await
        .unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["id"] != wf.as_str()));

    // A VIEWER reads everything, changes nothing.
    let (v, _vrx) = connect(&hub.url, Some(&viewer)).await.unwrap();
    v.request(qm.clone(), events::WORKFLOW_GET, json!({"workflow_id": wf}))
        .await
        .expect("viewer reads");
    v.subscribe(&[rooms::EVENTS.to_string()])
        .await
        .expect("viewer watches all");
    let err = v
        .request(qm.clone(), events::WORKFLOW_SUBMIT, json!({"spec": spec}))
        .await
        .expect_err("viewer cannot submit");
    assert_eq!(err.code, "GZ4003");
    let err = v
        .request(
            Target::Hub,
            events::SHUTDOWN_REQUEST,
            json!({"scope": "all"}),
        )
        .await
        .expect_err("viewer cannot stop the suite");
    assert_eq!(err.code, "GZ4003");
    let err = b
        .request(
            Target::Hub,
            events::AUTH_KEY_CREATE,
            json!({"name": "x", "user": "bob"}),
        )
        .await
        .expect_err("users cannot make keys");
    assert_eq!(err.code, "GZ4003");

    // An OPERATOR cancels anyone's workflow.
    let (o, _orx) = connect(&hub.url, Some(&operator)).await.unwrap();
    let answer = o
        .request(
            qm.clone(),
            events::WORKFLOW_CANCEL,
            json!({"workflow_id": wf}),
        )
        .await
        .expect("operator cancels");
    assert_eq!(answer["status"], "cancelled");
    // The suite is still up.
    assert_eq!(status_of(&hub.url, "/livez", None, None).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_register_only_as_their_keys_allow() {
    let hub = TestHub::start().await;
    let svc = hub.user_key("worker-box", "service");
    register(&hub.url, &svc, "python-provider", "py-ok")
        .await
        .expect("a service key registers a provider");
    let err = register(&hub.url, &svc, "queue-manager", "qm-evil")
        .await
        .err()
        .expect("not as a queue-manager");
    assert_eq!(err.code, "GZ4003", "{err:?}");
    let user = hub.user_key("ursula", "user");
    let err = register(&hub.url, &user, "python-provider", "py-user")
        .await
        .err()
        .expect("a user key registers nothing");
    assert_eq!(err.code, "GZ4003");
    // Another user cannot take over a registered id.
    let svc2 = hub.user_key("other-box", "service");
    let err = register(&hub.url, &svc2, "python-provider", "py-ok")
        .await
        .err()
        .expect("id taken");
    assert_eq!(err.code, "GZ4003");
    // Allowed explicitly, a service key may run a queue-manager.
    let (code, out, err) = gz_at(
        &hub.url,
        &[
            "auth",
            "key",
            "create",
            "qm",
            "--user",
            "worker-box",
            "--component-types",
            "queue-manager",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    register(
        &hub.url,
        made["api_key"].as_str().unwrap(),
        "queue-manager",
        "qm-ok",
    )
    .await
    .expect("allowed type registers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_outcomes_and_departures_change_nothing() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let hub = &suite.hub;
    let file = workflow_file("sleepy.yaml", SLEEPY);
    let wf = suite.submit(&file);
    wait_for(Duration::from_secs(10), || async {
        let (_, out, _) = suite.gz(&["inspect", "workflow", &wf, "--json"]);
        out.contains("\"running\"")
    })
    .await;
    let svc = hub.user_key("mallory", "service");
    let fake = register(&hub.url, &svc, "python-provider", "py-fake")
        .await
        .unwrap();
    let forged = json!({"outcomes": [{"workflow_id": wf, "task_id": "nap", "attempt": 1,
        "provider_id": "py-fake", "result": "forged", "finished_at": 1}]});
    for target in ["ee-1", "qm-1"] {
        fake.emit(
            Target::Component(target.into()),
            events::TASK_OUTCOMES,
            forged.clone(),
        )
        .unwrap();
    }
    // A forged departure of the engine is refused by the hub.
    let err = fake
        .request(
            Target::Room(rooms::COMPONENTS.into()),
            events::COMPONENT_LEFT,
            json!({"component_id": "ee-1", "component_type": "execution-engine", "reason": "forged"}),
        )
        .await
        .expect_err("forged departure refused");
    assert_eq!(err.code, "GZ4003");
    // A user cannot send outcomes at all.
    let (user, _rx) = connect(&hub.url, Some(&hub.user_key("eve", "user")))
        .await
        .unwrap();
    let err = user
        .request(
            Target::Component("qm-1".into()),
            events::TASK_OUTCOMES,
            forged.clone(),
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code, "GZ4003");
    let doc = suite.wait_finished(&wf, Duration::from_secs(30)).await;
    let task = gleitzeit_e2e::task(&doc, "nap");
    assert_eq!(task["status"], "completed", "{doc}");
    assert_eq!(task["result"]["result"], "real", "{doc}");
    assert_eq!(task["attempts"], 1, "the task ran once: {doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_endpoint_passwords_never_leave_the_provider() {
    let hub = TestHub::start().await;
    let sim = LlmSim::start("pw", &[]).await;
    let url = sim.url.replace("http://", "http://ops:s3cretpw@");
    let provider = hub.service("ollama-provider", "llm-pw", &["--urls", &url]);
    hub.wait_registered(&["llm-pw"]).await;
    let (client, _rx) = connect(&hub.url, Some(&hub.key)).await.unwrap();
    let seen = client
        .request(Target::Hub, events::LIST_COMPONENTS, Value::Null)
        .await
        .unwrap();
    let providers = gleitzeit_e2e::http_json(&hub.url, "/providers")
        .await
        .unwrap();
    let components = gleitzeit_e2e::http_json(&hub.url, "/components")
        .await
        .unwrap();
    let (code, status_out, _) = gz_at(&hub.url, &["providers", "--json"]);
    assert_eq!(code, 0);
    assert!(providers.to_string().contains("ops:***@"), "{providers}");
    for text in [
        seen.to_string(),
        providers.to_string(),
        components.to_string(),
        status_out,
        std::fs::read_to_string(provider.log()).unwrap_or_default(),
        std::fs::read_to_string(hub.proc.log()).unwrap_or_default(),
    ] {
        assert!(!text.contains("s3cretpw"), "password leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_beyond_loopback_refuses_to_run_without_auth() {
    let out = Command::new(bin("central-hub"))
        .args(["--host", "0.0.0.0", "--port", "0", "--auth", "off"])
        .output()
        .expect("hub runs");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--insecure-no-auth"), "{text}");
    // On loopback `--auth off` is allowed and everyone is the anonymous admin.
    let hub = TestHub::start_with(0, &["--auth", "off"]).await;
    let (client, _rx) = connect(&hub.url, None)
        .await
        .expect("anonymous on an open hub");
    let me = client
        .request(Target::Hub, events::AUTH_WHOAMI, Value::Null)
        .await
        .unwrap();
    assert_eq!(me["role"], "ADMIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gz_auth_init_login_and_key_management_work_end_to_end() {
    let dir = gleitzeit_e2e::temp_path("auth-e2e");
    let config = dir.join("config");
    let gz = |args: &[&str], key: Option<&str>, url: &str| {
        let mut cmd = Command::new(bin("gz"));
        cmd.env_remove("GLEITZEIT_API_KEY")
            .env("GLEITZEIT_CONFIG_DIR", &config)
            .env("GLEITZEIT_DATA_DIR", &dir)
            .args(["--hub-url", url])
            .args(args);
        if let Some(k) = key {
            cmd.env("GLEITZEIT_API_KEY", k);
        }
        let out = cmd.output().expect("gz runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Before any hub runs (nothing listens on port 1: `gz auth init` needs no hub).
    let offline = "http://127.0.0.1:1";
    let (code, out, err) = gz(&["auth", "init", "--json"], None, offline);
    assert_eq!(code, 0, "{out}{err}");
    let admin: Value = serde_json::from_str(&out).unwrap();
    let admin_key = admin["api_key"].as_str().unwrap().to_string();
    let (code, _, _) = gz(&["auth", "init"], None, offline);
    assert_ne!(code, 0, "a second init is refused");
    let (_hub, url) = hub_with_key_store(&dir).await;
    let (code, out, err) = gz(
        &["auth", "login", "--api-key", &admin_key, "--save", "--json"],
        None,
        &url,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(config.join("credentials.json").exists());
    let (code, out, _) = gz(&["auth", "status", "--json"], None, &url);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["identity"]["role"], "ADMIN");
    assert!(!out.contains(&admin_key), "status never shows the key");
    let (code, out, err) = gz(
        &["auth", "user", "create", "dora", "--role", "user", "--json"],
        None,
        &url,
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = gz(&["auth", "user", "list", "--json"], None, &url);
    assert_eq!(code, 0);
    assert!(out.contains("dora"));
    let (code, out, err) = gz(
        &[
            "auth",
            "key",
            "create",
            "laptop",
            "--user",
            "dora",
            "--expires",
            "30",
            "--json",
        ],
        None,
        &url,
    );
    assert_eq!(code, 0, "{out}{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let dora_key = made["api_key"].as_str().unwrap().to_string();
    assert!(made["key"]["expires_at"].as_u64().is_some());
    let (code, out, _) = gz(&["auth", "key", "list", "--json"], None, &url);
    assert_eq!(code, 0);
    assert!(
        !out.contains(&dora_key) && !out.contains(&admin_key),
        "keys are never listed"
    );
    // dora is a USER: no key management.
    let (code, out, _) = gz(&["auth", "user", "list", "--json"], Some(&dora_key), &url);
    assert_eq!(code, 1);
    assert!(out.contains("GZ4003"), "{out}");
    let (code, _, _) = gz(&["auth", "logout"], None, &url);
    assert_eq!(code, 0);
    assert!(!config.join("credentials.json").exists());
    let (code, out, _) = gz(&["status", "--json"], None, &url);
    assert_ne!(code, 0, "without a key the hub says no: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_tasks_do_not_see_the_providers_key() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let file = workflow_file(
        "env.yaml",
        "name: env\ntasks:\n  - id: peek\n    method: python/execute\n    parameters:\n      code: |\n        import os\n        result = os.environ.get('GLEITZEIT_API_KEY')\n",
    );
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc}");
    let task = gleitzeit_e2e::task(&doc, "peek");
    assert_eq!(task["result"]["result"], Value::Null, "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_get_their_key_from_a_key_file_made_once() {
    let dir = gleitzeit_e2e::temp_path("keyfile");
    let key_file = dir.join("keys/suite.key");
    // Before any hub runs, `gz auth init` needs none (nothing listens on port 1).
    let mut url = "http://127.0.0.1:1".to_string();
    let gz = |args: &[&str], url: &str| {
        let out = Command::new(bin("gz"))
            .env_remove("GLEITZEIT_API_KEY")
            .env("GLEITZEIT_CONFIG_DIR", dir.join("config"))
            .env("GLEITZEIT_DATA_DIR", &dir)
            .env("GLEITZEIT_API_KEY_FILE", &key_file)
            .args(["--hub-url", url])
            .args(args)
            .output()
            .expect("gz runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let init = [
        "auth",
        "init",
        "--if-missing",
        "--key-file",
        key_file.to_str().unwrap(),
        "--json",
    ];
    let (code, out) = gz(&init, &url);
    assert_eq!(code, 0, "{out}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first["created"], true);
    assert!(first["api_key"].is_null(), "the key is not printed: {out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
    }
    let key = std::fs::read_to_string(&key_file).unwrap();
    // A restart keeps the key.
    let (code, out) = gz(&init, &url);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"created\":false"), "{out}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    let (_hub, hub_url) = hub_with_key_store(&dir).await;
    url = hub_url;
    let (code, out) = gz(&["auth", "status", "--json"], &url);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("GLEITZEIT_API_KEY_FILE"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_declaring_100000_capabilities_is_refused_and_the_hub_stays_up() {
    let hub = TestHub::start().await;
    let reg = RegisterPayload {
        component_type: "python-provider".into(),
        component_id: "py-greedy".into(),
        capabilities: (0..100_000).map(|i| format!("python/m{i}")).collect(),
        capacity: 1,
        load: 0,
        version: "test".into(),
        host: "localhost".into(),
        pid: std::process::id(),
        metadata: Value::Null,
    };
    let mut config = ClientConfig::component(&hub.url, reg);
    config.auth = Some(json!({ "api_key": hub.key }));
    config.initial_connect_timeout = Some(Duration::from_secs(5));
    let err = HubClient::connect(config)
        .await
        .map(|_| ())
        .map_err(GzError::from)
        .expect_err("refused");
    assert_eq!(err.code, "GZ7012", "{err:?}");
    assert!(hub.components().await.is_empty());
    register(&hub.url, &hub.key, "python-provider", "py-modest")
        .await
        .expect("a normal registration still works");
}
