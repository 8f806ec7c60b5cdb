//! TLS end to end with a self-signed CA made at test time: the hub serves HTTPS and WSS
//! (`--tls-cert/--tls-key`), every service and `gz` reach it at an `https://` URL trusting the
//! CA through `GLEITZEIT_TLS_CA`; a client without the CA, plain HTTP on the TLS port and bad
//! certificate files are refused with coded errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gleitzeit_e2e::{
    bin, gz_at, http_json, key_of, launch, repo_root, service_at, submit_at, task,
    wait_finished_at, workflow_file, SuiteOptions, TestHub, TestSuite,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of one test PKI: a CA and a hub certificate for 127.0.0.1 and localhost.
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh CA (written to `ca.pem`) and a server certificate it signed (`hub.pem`,
/// `hub.key`), in a new temp folder.
fn make_pki(name: &str) -> Pki {
    let dir = gleitzeit_e2e::temp_path(&format!("tls-{name}"));
    std::fs::create_dir_all(&dir).unwrap();

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("Gleitzeit test CA {name}"));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let hub_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "gleitzeit hub");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let hub_cert = params.signed_by(&hub_key, &issuer).unwrap();

    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("hub.pem"),
        key: dir.join("hub.key"),
        dir,
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, hub_cert.pem()).unwrap();
    std::fs::write(&pki.key, hub_key.serialize_pem()).unwrap();
    pki
}

/// `gz` against `hub_url` with the hub's key and `ca` as `GLEITZEIT_TLS_CA` (None: unset).
fn gz_with_ca(hub_url: &str, ca: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("gz"));
    cmd.env_remove("GLEITZEIT_TLS_CA")
        .env("GLEITZEIT_API_KEY", key_of(hub_url).unwrap_or_default())
        .arg("--hub-url")
        .arg(hub_url)
        .args(args)
        .current_dir(repo_root());
    if let Some(ca) = ca {
        cmd.env("GLEITZEIT_TLS_CA", ca);
    }
    let out = cmd.output().expect("gz runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const SQUARES: &str = r#"
name: squares over tls
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
async fn the_suite_runs_workflows_over_tls_with_a_private_ca() {
    let pki = make_pki("suite");
    let hub = TestHub::start_tls(&pki.cert, &pki.key, &pki.ca, &[]).await;
    assert!(hub.url.starts_with("https://127.0.0.1:"));
    // queue-manager, resolver, engine and python-provider, each over wss with the CA.
    let suite = TestSuite::start_on_hub(hub, SuiteOptions::default()).await;
    let url = suite.hub.url.clone();

    let file = workflow_file("squares.yaml", SQUARES);
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["status"], "completed");
    assert_eq!(task(&doc, "report")["result"]["result"], "square is 49");

    let id = submit_at(&url, &file);
    let done = wait_finished_at(&url, &id, Duration::from_secs(30)).await;
    assert_eq!(done["workflow"]["status"], "completed", "{done:#}");

    let (code, out, err) = gz_at(&url, &["status", "--json"]);
    assert_eq!(code, 0, "gz status over https failed: {out}{err}");
    for id in ["qm-1", "dr-1", "ee-1", "py-1"] {
        assert!(out.contains(id), "{id} missing from gz status: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_the_ca_and_plain_http_are_refused() {
    let pki = make_pki("refused");
    let other = make_pki("other");
    let hub = TestHub::start_tls(&pki.cert, &pki.key, &pki.ca, &[]).await;
    let url = hub.url.clone();

    // HTTP (gz status) and websocket (gz auth status) without the CA, and with another CA: the
    // certificate check fails and says so, as GZ1010 (exit 3).
    for ca in [None, Some(other.ca.as_path())] {
        for args in [&["status"][..], &["auth", "status"][..]] {
            let (code, out, err) = gz_with_ca(&url, ca, args);
            assert_eq!(code, 3, "gz {args:?} (CA {ca:?}): {out}{err}");
            assert!(err.contains("GZ1010"), "{err}");
            assert!(
                err.to_lowercase().contains("certificate"),
                "the reason names the certificate: {err}"
            );
        }
    }
    // With the CA both work.
    for args in [&["status"][..], &["auth", "status"][..]] {
        let (code, out, err) = gz_with_ca(&url, Some(&pki.ca), args);
        assert_eq!(code, 0, "gz {args:?} with the CA: {out}{err}");
    }

    // A CA file that is missing or not PEM is GZ1012 naming the file, not a TLS failure.
    let junk = pki.dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for bad in [pki.dir.join("missing.pem"), junk] {
        let (code, out, err) = gz_with_ca(&url, Some(&bad), &["auth", "status"]);
        assert_ne!(code, 0, "{out}{err}");
        assert!(err.contains("GZ1012"), "{err}");
        let name = bad.file_name().unwrap().to_string_lossy().to_string();
        assert!(err.contains(&name), "{err}");
    }

    // A provider without the CA never registers; the same binary with it does.
    let _no_ca = launch("py-noca", "python-provider")
        .env_remove("GLEITZEIT_TLS_CA")
        .env("GLEITZEIT_API_KEY", &hub.key)
        .env("GLEITZEIT_HUB_URL", &url)
        .env("GLEITZEIT_COMPONENT_ID", "py-noca")
        .spawn()
        .expect("provider starts");
    let _with_ca = service_at(&url, "python-provider", "py-ca", &[]);
    hub.wait_registered(&["py-ca"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids: Vec<_> = hub
        .components()
        .await
        .iter()
        .map(|c| c["component_id"].clone())
        .collect();
    assert!(!ids.contains(&"py-noca".into()), "{ids:?}");

    // Plain HTTP to the TLS port gets no answer, from gz or from any HTTP client.
    let plain = url.replace("https://", "http://");
    assert!(http_json(&plain, "/livez").await.is_none());
    let (code, out, err) = gz_with_ca(&plain, Some(&pki.ca), &["status"]);
    assert_eq!(code, 3, "{out}{err}");

    // A client that connects and never speaks TLS does not hold up anyone else.
    let _silent = TcpStream::connect(("127.0.0.1", hub.port)).unwrap();
    let started = Instant::now();
    assert!(http_json(&url, "/livez").await.is_some());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_with_unusable_tls_files_refuses_to_start_and_names_them() {
    let pki = make_pki("files");
    let missing = pki.dir.join("missing.pem");
    let cases: [(&[&Path], &str); 4] = [
        (&[&missing, &pki.key], "missing.pem"),
        (&[&pki.key, &pki.key], "hub.key"),
        (&[&pki.ca, &pki.key], "cannot be used together"),
        (&[&pki.cert], "--tls-cert without --tls-key"),
    ];
    for (files, expected) in cases {
        let mut hub = launch("central-hub-badtls", "central-hub")
            .args(["--port", "0", "--data-dir"])
            .arg(&pki.dir)
            .env_remove("GLEITZEIT_TLS_CERT")
            .env_remove("GLEITZEIT_TLS_KEY")
            .arg("--tls-cert")
            .arg(files[0]);
        if let Some(key) = files.get(1) {
            hub = hub.arg("--tls-key").arg(key);
        }
        let mut hub = hub.spawn().expect("hub starts");
        let exited = hub.wait_exit(Duration::from_secs(10));
        assert!(
            exited.is_some_and(|s| !s.success()),
            "the hub must exit with an error for {expected}"
        );
        let log = std::fs::read_to_string(hub.log()).unwrap();
        assert!(log.contains("GZ1012"), "{log}");
        assert!(log.contains(expected), "{log}");
    }
}
