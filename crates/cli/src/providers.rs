//! `gz providers`: LLM endpoints with health, load, models, latency and cooldown state.

use serde_json::{json, Value};

use crate::status::get_json;
use crate::CmdResult;

/// `gz providers [--json]`.
pub async fn run(hub_url: &str, json_out: bool) -> CmdResult {
    let providers: Vec<Value> = get_json(hub_url, "/providers").await?;
    if json_out {
        println!("{}", json!({ "providers": providers }));
        return Ok(0);
    }
    if providers.is_empty() {
        println!("no LLM providers registered");
        return Ok(0);
    }
    for p in &providers {
        println!(
            "provider {} on {} ({}), strategy {}, load {}/{}",
            p["provider_id"].as_str().unwrap_or("?"),
            p["host"].as_str().unwrap_or("?"),
            p["health"].as_str().unwrap_or("?"),
            p["strategy"].as_str().unwrap_or("?"),
            p["load"],
            p["capacity"]
        );
        println!(
            "  {:<22} {:<7} {:<10} {:>7} {:>9} {:>8} {:<30} URL",
            "ENDPOINT", "KIND", "HEALTH", "LOAD", "LATENCY", "ERRORS", "MODELS"
        );
        for e in p["endpoints"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            let health = match e["health"].as_str() {
                Some("cooldown") => format!(
                    "cooldown {:.0}s",
                    e["cooldown_remaining_seconds"].as_f64().unwrap_or(0.0)
                ),
                Some(h) => h.to_string(),
                None => "?".into(),
            };
            let latency = e["latency_ms"]
                .as_f64()
                .map(|l| format!("{l:.0} ms"))
                .unwrap_or_else(|| "-".into());
            let models: Vec<&str> = e["models"]
                .as_array()
                .map(|m| m.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            println!(
                "  {:<22} {:<7} {:<10} {:>7} {:>9} {:>8} {:<30} {}",
                e["name"].as_str().unwrap_or("?"),
                e["kind"].as_str().unwrap_or("?"),
                health,
                format!("{}/{}", e["in_flight"], e["max_concurrent"]),
                latency,
                format!("{}/{}", e["errors"], e["requests"]),
                models.join(","),
                e["url"].as_str().unwrap_or("")
            );
        }
    }
    Ok(0)
}
