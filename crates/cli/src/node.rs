//! `gz inspect node ID`: one component of the hub's table (any component id, or a unique
//! prefix of one): type, hub, health, heartbeat age, load against capacity, routed requests
//! in flight, what it serves (methods and declared functions), and for an LLM provider its
//! endpoints.

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::ComponentInfo;
use serde_json::{json, Value};

use crate::render;
use crate::status::get_json;
use crate::CmdResult;

/// The component `id`, or the one component whose id starts with it.
fn find<'a>(components: &'a [ComponentInfo], id: &str) -> Result<&'a ComponentInfo, GzError> {
    if let Some(c) = components
        .iter()
        .find(|c| c.registration.component_id == id)
    {
        return Ok(c);
    }
    let matching: Vec<&ComponentInfo> = components
        .iter()
        .filter(|c| c.registration.component_id.starts_with(id))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(GzError::new(
            ErrorCode::NoRoute,
            format!("no component {id:?} is registered"),
        )
        .with_hint("`gz status` lists the registered components")),
        many => Err(GzError::new(
            ErrorCode::Usage,
            format!(
                "{id:?} names {} components: {}",
                many.len(),
                many.iter()
                    .map(|c| c.registration.component_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_hint("give more of the id")),
    }
}

/// `gz inspect node ID [--json]`.
pub async fn inspect(hub_url: &str, id: &str, json_out: bool) -> CmdResult {
    let components: Vec<ComponentInfo> = get_json(hub_url, "/components").await?;
    let c = find(&components, id)?;
    let r = &c.registration;
    let endpoints: Vec<Value> = if r.metadata.get("endpoints").is_some() {
        let providers: Vec<Value> = get_json(hub_url, "/providers").await.unwrap_or_default();
        providers
            .into_iter()
            .find(|p| p["provider_id"] == r.component_id.as_str())
            .and_then(|p| p["endpoints"].as_array().cloned())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let functions: Vec<&str> = r
        .metadata
        .get("functions")
        .and_then(Value::as_array)
        .map(|fs| fs.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default();
    let methods: Vec<&str> = r
        .capabilities
        .iter()
        .map(String::as_str)
        .filter(|m| !m.contains('#'))
        .collect();
    if json_out {
        println!(
            "{}",
            json!({
                "component": c,
                "heartbeat_age_seconds": render::now_ms().saturating_sub(c.last_heartbeat) as f64 / 1000.0,
                "methods": methods,
                "functions": functions,
                "endpoints": endpoints,
            })
        );
        return Ok(0);
    }
    let health = serde_json::to_value(c.health).unwrap_or(Value::Null);
    println!("node       {}", r.component_id);
    println!("type       {}", r.component_type);
    println!("hub        {}", c.hub_id.as_deref().unwrap_or("this hub"));
    println!("health     {}", health.as_str().unwrap_or("?"));
    println!(
        "heartbeat  {} ago",
        render::seconds(render::now_ms().saturating_sub(c.last_heartbeat) as f64 / 1000.0)
    );
    println!("connected  {}", render::time(c.connected_at));
    println!("host       {} (pid {})", r.host, r.pid);
    println!("version    {}", r.version);
    println!(
        "load       {}/{} (routed in flight {})",
        r.load, r.capacity, c.in_flight
    );
    if !methods.is_empty() {
        println!("serves     {}", methods.join(", "));
    }
    if !functions.is_empty() {
        println!("functions  {} ({})", functions.len(), functions.join(", "));
    }
    for e in &endpoints {
        println!(
            "endpoint   {} {} {} load {}/{} models {}",
            e["name"].as_str().unwrap_or("?"),
            e["url"].as_str().unwrap_or("?"),
            e["health"].as_str().unwrap_or("?"),
            e["in_flight"],
            e["max_concurrent"],
            render::compact(&e["models"])
        );
    }
    Ok(0)
}
