//! `gz schema` prints the wire protocol's JSON Schema, the same document as the committed
//! `docs/schema/events.json`, without needing a hub.

use std::process::Command;

#[test]
fn gz_schema_prints_the_committed_document() {
    let out = Command::new(env!("CARGO_BIN_EXE_gz"))
        .arg("schema")
        .env("GLEITZEIT_HUB_URL", "http://127.0.0.1:9")
        .output()
        .expect("run gz schema");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/schema/events.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("events.json")).expect("JSON");
    assert_eq!(printed, committed);
    let events = printed["x-events"].as_object().expect("x-events");
    assert!(events.len() >= 50, "{} events", events.len());
    assert_eq!(
        events["task_completed"]["payload"]["$ref"],
        "#/$defs/TaskEvent"
    );
    assert_eq!(
        events["lease_tasks"]["reply"]["$ref"],
        "#/$defs/LeasedTasks"
    );
}
