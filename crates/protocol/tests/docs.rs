//! The written contract against the types: `docs/schema/events.json` is exactly what
//! [`catalog::json_schema`] generates, and `docs/protocol.md` §5 documents exactly the
//! events of the catalogue. Run with `GLEITZEIT_BLESS=1` to rewrite the schema file after
//! changing a wire type.

use std::collections::BTreeSet;
use std::path::PathBuf;

use gleitzeit_protocol::catalog;

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

#[test]
fn the_committed_json_schema_is_the_generated_one() {
    let path = docs().join("schema/events.json");
    let generated = serde_json::to_string_pretty(&catalog::json_schema()).expect("json") + "\n";
    if std::env::var_os("GLEITZEIT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: run `GLEITZEIT_BLESS=1 cargo test -p gleitzeit-protocol --test docs`",
        path.display()
    );
}

/// The backticked names in the first column of the event tables (headed `| Event |`) of
/// §5 ("Events").
fn documented_events() -> BTreeSet<String> {
    let text = std::fs::read_to_string(docs().join("protocol.md")).expect("docs/protocol.md");
    let start = text.find("\n## 5. Events").expect("§5");
    let end = text[start..]
        .find("\n## 6.")
        .map_or(text.len(), |e| start + e);
    let mut in_event_table = false;
    let mut names = BTreeSet::new();
    for line in text[start..end].lines() {
        if !line.starts_with('|') {
            in_event_table = false;
        } else if line.starts_with("| Event |") {
            in_event_table = true;
        } else if let Some(name) = line.strip_prefix("| `").and_then(|l| l.split('`').next()) {
            if in_event_table {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[test]
fn protocol_md_documents_every_event_and_no_other() {
    let catalogue: BTreeSet<String> = catalog::events()
        .iter()
        .map(|e| e.name.to_string())
        .collect();
    let documented = documented_events();
    let missing: Vec<_> = catalogue.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&catalogue).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/protocol.md §5 lacks {missing:?} and names unknown events {unknown:?}"
    );
}
