//! Printing for people and for machines (`--json`).

use gleitzeit_protocol::GzError;
use serde_json::json;

use crate::CmdResult;

/// Prints an error: JSON on stdout with `--json`, else `GZnnnn: message` and the hint on stderr.
pub fn print_error(error: &GzError, json: bool) {
    if json {
        println!("{}", json!({ "error": error }));
    } else {
        eprintln!("error: {}", error.render());
    }
}

/// `gz schema`: the wire protocol as one JSON Schema document.
pub fn schema() -> CmdResult {
    let doc = gleitzeit_protocol::catalog::json_schema();
    println!(
        "{}",
        serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
    );
    Ok(0)
}
