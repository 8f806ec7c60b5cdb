//! Workflows that do not depend on the client's disk, end to end through the real binaries:
//! the files tasks name (a `file:` script, a vision image, a text file) travel with the
//! workflow, so the same workflow completes whether the client runs it from its folder or
//! from elsewhere with the folder deleted before any task ran; providers run in folders of
//! their own, never the client's; a file too large or unreadable is refused at submit with
//! its code, before anything is created; an old client's task still finds its script where
//! its workflow folder says, when the provider has it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gleitzeit_e2e::{
    bin, key_of, launch, provider_config, service_key_of, task, temp_path, wait_finished_at,
    LlmSim, Proc, SuiteOptions, TestHub, TestSuite,
};
use gleitzeit_protocol::Target;
use serde_json::{json, Value};

/// A service binary connected to `hub`, started in `dir` (its working directory).
fn service_in(hub: &TestHub, binary: &str, id: &str, dir: &Path, args: &[&str]) -> Proc {
    let mut service = launch(id, binary)
        .current_dir(dir)
        .env("GLEITZEIT_HUB_URL", &hub.url)
        .env("GLEITZEIT_COMPONENT_ID", id)
        .env("GLEITZEIT_LOG_LEVEL", "info")
        .args(args);
    if let Some(key) = service_key_of(&hub.url) {
        service = service.env("GLEITZEIT_API_KEY", key);
    }
    service.spawn().unwrap_or_else(|e| panic!("{e}"))
}

/// `gz --hub-url HUB ARGS`, run in `dir`: (exit code, stdout, stderr).
fn gz_in(hub: &TestHub, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("gz"))
        .env("GLEITZEIT_API_KEY", key_of(&hub.url).expect("key"))
        .arg("--hub-url")
        .arg(&hub.url)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("gz runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"))
}

/// The hub, a queue-manager, resolver and engine, and a python- and an ollama-provider
/// (against a simulated endpoint) working in `home`, a folder of their own.
struct Cluster {
    hub: TestHub,
    sim: LlmSim,
    _services: Vec<Proc>,
    dirs: Vec<PathBuf>,
}

impl Cluster {
    async fn start(home: &Path) -> Cluster {
        let hub = TestHub::start().await;
        let sim = LlmSim::start("portable", &["--latency-ms", "1"]).await;
        let cfg = provider_config(&format!(
            "endpoints:\n  - {{ name: sim, url: \"{}\", max_concurrent: 4 }}\n",
            sim.url
        ));
        let data = temp_path("portable-qm");
        let services = vec![
            hub.service(
                "queue-manager",
                "qm-1",
                &["--data-dir", &data.display().to_string()],
            ),
            hub.service("dependency-resolver", "dr-1", &[]),
            hub.service("execution-engine", "ee-1", &[]),
            service_in(&hub, "python-provider", "py-1", home, &["--workers", "2"]),
            service_in(
                &hub,
                "ollama-provider",
                "llm-1",
                home,
                &["--config", &cfg.display().to_string()],
            ),
        ];
        hub.wait_registered(&["qm-1", "dr-1", "ee-1", "py-1", "llm-1"])
            .await;
        let cfg_dir = cfg.parent().expect("config folder").to_path_buf();
        Cluster {
            hub,
            sim,
            _services: services,
            dirs: vec![data, cfg_dir],
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A workflow folder: a script, an image and a text file in sub-folders, and `flow.yaml`
/// naming them by relative paths. Every task waits for `marker` to exist (`gate`).
fn workflow_folder(marker: &Path) -> PathBuf {
    let folder = temp_path("portable-flow");
    std::fs::create_dir_all(folder.join("scripts")).expect("dir");
    std::fs::create_dir_all(folder.join("images")).expect("dir");
    std::fs::create_dir_all(folder.join("notes")).expect("dir");
    std::fs::write(
        folder.join("scripts/compute.py"),
        "import os\nprint('computing in', os.getcwd())\n\
         result = {'double': context['n'] * 2, 'cwd': os.getcwd(), 'file': __file__}\n",
    )
    .expect("script");
    // A 1x1 PNG.
    std::fs::write(
        folder.join("images/pixel.png"),
        [
            0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0,
            0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
        ],
    )
    .expect("image");
    std::fs::write(folder.join("notes/doc.txt"), "THE NOTES TRAVELLED").expect("notes");
    std::fs::write(
        folder.join("flow.yaml"),
        format!(
            r#"name: portable
tasks:
  - id: gate
    method: python/execute
    parameters:
      code: "import os, time\nwhile not os.path.exists(context['marker']):\n    time.sleep(0.05)\nresult = 'open'"
      context: {{ marker: {marker:?} }}
  - id: compute
    method: python/execute
    dependencies: [gate]
    parameters: {{ file: scripts/compute.py, context: {{ n: 21 }} }}
  - id: again
    method: python/execute
    dependencies: [gate]
    parameters: {{ file: ./scripts/compute.py, context: {{ n: 1 }} }}
  - id: look
    method: llm/vision
    dependencies: [gate]
    parameters: {{ model: llava, prompt: "what is this", image_path: images/pixel.png }}
  - id: read
    method: llm/chat
    dependencies: [gate]
    parameters:
      model: llama3.2
      messages: [{{ role: user, content: "summarise" }}]
      file_path: notes/doc.txt
  - id: where
    method: python/execute
    dependencies: [gate]
    parameters: {{ code: "import os\nresult = os.getcwd()" }}
"#,
            marker = marker.display().to_string()
        ),
    )
    .expect("workflow");
    folder
}

/// What every run of the workflow of [`workflow_folder`] must show, from a `gz run --json`
/// or `gz inspect workflow --json` document.
fn assert_ran_without_the_clients_disk(doc: &Value, folder: &Path, home: &Path) {
    for id in ["gate", "compute", "again", "look", "read", "where"] {
        assert_eq!(task(doc, id)["status"], "completed", "{id}: {doc:#}");
    }
    let computed = &task(doc, "compute")["result"]["result"];
    assert_eq!(computed["double"], 42, "{computed}");
    assert_eq!(task(doc, "again")["result"]["result"]["double"], 2);
    let cwd = PathBuf::from(computed["cwd"].as_str().expect("cwd"));
    let script = PathBuf::from(computed["file"].as_str().expect("file"));
    assert!(
        script.starts_with(&cwd) && script.ends_with("scripts/compute.py"),
        "the script ran from its copy in the task's folder: {script:?} in {cwd:?}"
    );
    let where_ = PathBuf::from(
        task(doc, "where")["result"]["result"]
            .as_str()
            .expect("cwd"),
    );
    for dir in [&cwd, &where_] {
        assert!(
            dir.starts_with(std::env::temp_dir()) && !dir.starts_with(folder) && dir != home,
            "python tasks run in a folder of their own, not the client's or the provider's: {dir:?}"
        );
        assert!(
            std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none()),
            "the task's folder is removed when it ends, or kept empty for the next: {dir:?}"
        );
    }
    let read = task(doc, "read")["result"]["response"]
        .as_str()
        .unwrap_or_default();
    assert!(read.contains("THE NOTES TRAVELLED"), "{read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_naming_a_script_and_an_image_completes_after_its_folder_is_deleted() {
    let home = temp_path("portable-home");
    std::fs::create_dir_all(&home).expect("home");
    let cluster = Cluster::start(&home).await;
    let marker = temp_path("portable-gate");
    let folder = workflow_folder(&marker);

    // Run from the workflow's folder.
    std::fs::write(&marker, "").expect("marker");
    let (code, out, err) = gz_in(&cluster.hub, &folder, &["run", "flow.yaml", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc = json_of(&out);
    assert_ran_without_the_clients_disk(&doc, &folder, &home);
    assert_eq!(cluster.sim.stats().await["images_received"], 1);

    // The same workflow submitted by a client in another folder; the workflow's folder is
    // deleted right after the submit, before any task runs (they wait for the marker).
    std::fs::remove_file(&marker).expect("marker removed");
    let elsewhere = temp_path("portable-client");
    std::fs::create_dir_all(&elsewhere).expect("client folder");
    let file = folder.join("flow.yaml").display().to_string();
    let (code, out, err) = gz_in(&cluster.hub, &elsewhere, &["submit", &file, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = json_of(&out)["workflow_id"]
        .as_str()
        .expect("id")
        .to_string();
    std::fs::remove_dir_all(&folder).expect("the workflow's folder is gone");
    std::fs::write(&marker, "").expect("marker");
    let doc = wait_finished_at(&cluster.hub.url, &id, Duration::from_secs(60)).await;
    assert_eq!(doc["workflow"]["status"], "completed", "{doc:#}");
    assert_ran_without_the_clients_disk(&doc, &folder, &home);
    assert_eq!(cluster.sim.stats().await["images_received"], 2);

    let _ = std::fs::remove_file(&marker);
    let _ = std::fs::remove_dir_all(&elsewhere);
    let _ = std::fs::remove_dir_all(&home);
}

/// `gz list --json` has no workflow called `name`.
fn assert_not_created(suite: &TestSuite, name: &str) {
    let (code, list, err) = suite.gz(&["list", "--json"]);
    assert_eq!(code, 0, "{list}{err}");
    assert!(
        !list.contains(&format!("\"{name}\"")),
        "a workflow was created: {list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_too_large_to_travel_are_gz7013_and_unreadable_ones_gz7014_before_anything_is_created(
) {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let folder = temp_path("portable-refused");
    std::fs::create_dir_all(folder.join("scripts")).expect("dir");
    let mib = 1024 * 1024;
    std::fs::write(folder.join("big.png"), vec![7u8; 9 * mib]).expect("big");
    for i in 0..3u8 {
        std::fs::write(folder.join(format!("part-{i}.png")), vec![i; 6 * mib]).expect("part");
    }
    let run = |name: &str, yaml: &str| {
        let file = folder.join(format!("{name}.yaml"));
        std::fs::write(&file, format!("name: {name}\n{yaml}")).expect("workflow");
        let (code, out, err) = suite.gz(&["run", &file.display().to_string(), "--json"]);
        assert_eq!(code, 2, "refused as the user's mistake: {out}{err}");
        let doc = json_of(&out);
        (
            doc["error"]["code"].clone(),
            doc["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };

    // One file over 8 MiB.
    let (code, message) = run(
        "too-big",
        "tasks:\n  - id: look\n    method: llm/vision\n    parameters: { model: llava, prompt: x, image_path: big.png }\n",
    );
    assert_eq!(code, "GZ7013", "{message}");
    assert!(
        message.contains("task `look`") && message.contains("big.png"),
        "{message}"
    );
    assert_not_created(&suite, "too-big");

    // Each under 8 MiB, together over 16 MiB.
    let (code, message) = run(
        "too-much",
        "tasks:\n  - id: look\n    method: llm/vision\n    parameters: { model: llava, prompt: x, image_paths: [part-0.png, part-1.png, part-2.png] }\n",
    );
    assert_eq!(code, "GZ7013", "{message}");
    assert!(message.contains("part-2.png"), "{message}");
    assert_not_created(&suite, "too-much");

    // A script that is not there, and a folder named as a script.
    let (code, message) = run(
        "missing",
        "tasks:\n  - id: fine\n    method: python/execute\n    parameters: { code: \"result = 1\" }\n  - id: lost\n    method: python/execute\n    parameters: { file: scripts/lost.py }\n",
    );
    assert_eq!(code, "GZ7014", "{message}");
    assert!(
        message.contains("task `lost`") && message.contains("scripts/lost.py"),
        "{message}"
    );
    assert_not_created(&suite, "missing");
    let (code, message) = run(
        "a-folder",
        "tasks:\n  - id: dir\n    method: python/execute\n    parameters: { file: scripts }\n",
    );
    assert_eq!(code, "GZ7014", "{message}");
    assert_not_created(&suite, "a-folder");

    // `gz submit` refuses the same way.
    let (code, out, _) = suite.gz(&[
        "submit",
        &folder.join("missing.yaml").display().to_string(),
        "--json",
    ]);
    assert_eq!(code, 2);
    assert!(out.contains("GZ7014"), "{out}");
    assert_not_created(&suite, "missing");
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_tasks_run_in_fresh_folders_under_the_work_dir_removed_when_they_end() {
    let mut suite = TestSuite::start(SuiteOptions::default()).await;
    suite.services.retain(|p| p.name() != "py-1");
    let work = temp_path("portable-work");
    let provider = suite.hub.service(
        "python-provider",
        "py-2",
        &["--workers", "2", "--work-dir", &work.display().to_string()],
    );
    suite.services.push(provider);
    suite.hub.wait_registered(&["py-2"]).await;
    let folder = temp_path("portable-cwd");
    std::fs::create_dir_all(&folder).expect("dir");
    let file = folder.join("cwd.yaml");
    std::fs::write(
        &file,
        "name: cwd\ntasks:\n  - id: a\n    method: python/execute\n    parameters: { code: \"import os\\nopen('scratch.txt', 'w').write('x')\\nresult = os.getcwd()\" }\n  - id: b\n    method: python/execute\n    parameters: { code: \"import os\\nresult = sorted(os.listdir('.'))\" }\n",
    )
    .expect("workflow");
    let (code, doc) = suite.run_json(&file);
    assert_eq!(code, 0, "{doc:#}");
    let cwd = PathBuf::from(task(&doc, "a")["result"]["result"].as_str().expect("cwd"));
    assert!(
        cwd.starts_with(&work) && cwd != work,
        "{cwd:?} under {work:?}"
    );
    assert_eq!(
        task(&doc, "b")["result"]["result"],
        json!([]),
        "a task's folder starts empty: it never sees another task's files"
    );
    // `a` left a file: its folder is gone. `b` left its folder empty: it is kept for a
    // later task (at most one per worker here), and removed when the provider stops.
    let left: Vec<PathBuf> = std::fs::read_dir(&work)
        .expect("work dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        !left.contains(&cwd),
        "a folder a task left files in is removed"
    );
    assert!(left.len() <= 2, "{left:?}");
    assert!(
        left.iter()
            .all(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_none())),
        "only empty folders are kept: {left:?}"
    );
    if let Some(p) = suite.services.iter_mut().find(|p| p.name() == "py-2") {
        p.terminate(std::time::Duration::from_secs(10));
    }
    let left: Vec<_> = std::fs::read_dir(&work).expect("work dir").collect();
    assert!(
        left.is_empty(),
        "kept folders go with the provider: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_clients_task_finds_its_script_only_where_the_provider_has_it() {
    let suite = TestSuite::start(SuiteOptions::default()).await;
    let folder = temp_path("portable-old");
    std::fs::create_dir_all(&folder).expect("dir");
    std::fs::write(
        folder.join("old.py"),
        "import os\nresult = [context['n'] + 1, os.getcwd()]\n",
    )
    .expect("script");
    let (client, _incoming) = suite.hub.client().await;
    // As an old client submits: a path and the folder it is relative to, no contents.
    let submit = |name: &str, base_dir: &Path| {
        json!({
            "workflow_id": format!("wf-old-{name}-{}", std::process::id()),
            "base_dir": base_dir.display().to_string(),
            "spec": { "name": name, "tasks": [
                { "id": "old", "method": "python/execute", "parameters": { "file": "old.py", "context": { "n": 1 } } },
            ]},
        })
    };
    let mut ids = Vec::new();
    for (name, base) in [("here", folder.clone()), ("gone", folder.join("gone"))] {
        let reply = client
            .request_with_timeout(
                Target::Type("queue-manager".into()),
                "workflow_submit",
                submit(name, &base),
                Duration::from_secs(30),
            )
            .await
            .expect("accepted");
        ids.push(reply["workflow_id"].as_str().expect("id").to_string());
    }
    client.close().await;

    let here = wait_finished_at(&suite.hub.url, &ids[0], Duration::from_secs(60)).await;
    assert_eq!(here["workflow"]["status"], "completed", "{here:#}");
    let result = &task(&here, "old")["result"]["result"];
    assert_eq!(result[0], 2);
    let cwd = PathBuf::from(result[1].as_str().expect("cwd"));
    assert!(
        !cwd.starts_with(&folder),
        "it still runs in a folder of its own: {cwd:?}"
    );

    let gone = wait_finished_at(&suite.hub.url, &ids[1], Duration::from_secs(60)).await;
    let error = &task(&gone, "old")["error"];
    assert_eq!(error["code"], "GZ2020", "{gone:#}");
    let _ = std::fs::remove_dir_all(&folder);
}
