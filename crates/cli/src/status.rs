//! `gz status`: hub health and the component table.

use std::sync::OnceLock;
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{ComponentInfo, HubStatus};
use serde_json::json;

use crate::CmdResult;

/// The hubs of a comma-separated list, the first whose `/health` answers moved to the
/// front (the order is kept otherwise).
pub async fn answering_first(list: &str) -> Vec<String> {
    let mut urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    for i in 0..urls.len() {
        if is_alive(&urls[i]).await {
            let up = urls.remove(i);
            urls.insert(0, up);
            break;
        }
    }
    if urls.is_empty() {
        urls.push(list.to_string());
    }
    urls
}

/// Whether a hub answers at `hub_url` (its bare liveness probe, which needs no key).
pub async fn is_alive(hub_url: &str) -> bool {
    get_json::<serde_json::Value>(hub_url, "/livez")
        .await
        .is_ok()
}

/// The HTTP client for the hub: rustls trusting the system roots and `GLEITZEIT_TLS_CA`
/// (the same authorities the websocket client trusts). Built once per process.
fn http_client() -> Result<reqwest::Client, GzError> {
    static CLIENT: OnceLock<Result<reqwest::Client, GzError>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(3));
            for ca in gleitzeit_hub_client::tls::custom_ca()? {
                let cert = reqwest::Certificate::from_der(ca.as_ref()).map_err(|e| {
                    GzError::new(
                        ErrorCode::TlsConfig,
                        format!("a certificate in {} is not usable: {e}", ca_file()),
                    )
                })?;
                builder = builder.add_root_certificate(cert);
            }
            builder
                .build()
                .map_err(|e| GzError::new(ErrorCode::Internal, with_causes(&e)))
        })
        .clone()
}

fn ca_file() -> String {
    gleitzeit_hub_client::tls::ca_path()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// An error with its causes (`error sending request: … : invalid peer certificate: …`):
/// reqwest's own message leaves out why, e.g. which certificate check failed.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}

/// Fetches `path` from the hub's HTTP surface as JSON, presenting the chosen key.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    hub_url: &str,
    path: &str,
) -> Result<T, GzError> {
    let url = format!("{}{}", hub_url.trim_end_matches('/'), path);
    let mut req = http_client()?.get(&url);
    if let Some((key, _)) = crate::credentials::api_key() {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.map_err(|e| {
        let reason = with_causes(&e);
        let hint = gleitzeit_hub_client::tls::certificate_hint(&reason);
        let error = GzError::new(
            ErrorCode::HubUnreachable,
            format!("cannot reach the hub at {hub_url}: {reason}"),
        );
        match hint {
            Some(h) => error.with_hint(h),
            None => error,
        }
    })?;
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED
        || resp.status() == reqwest::StatusCode::FORBIDDEN
    {
        // The hub's refusal is a GzError (GZ4001/GZ4002/GZ4003).
        let fallback = GzError::new(
            ErrorCode::AuthInvalid,
            format!("the hub at {hub_url} refused {path}: {}", resp.status()),
        );
        return Err(resp.json::<GzError>().await.unwrap_or(fallback));
    }
    if !resp.status().is_success() {
        return Err(GzError::new(
            ErrorCode::HubUnreachable,
            format!("the hub at {hub_url} answered {} for {path}", resp.status()),
        ));
    }
    resp.json::<T>().await.map_err(|e| {
        GzError::new(
            ErrorCode::InvalidPayload,
            format!("unexpected answer from {url}: {e}"),
        )
    })
}

/// `gz status [--json]`.
pub async fn run(hub_url: &str, json_out: bool) -> CmdResult {
    let hub: HubStatus = get_json(hub_url, "/health").await?;
    let components: Vec<ComponentInfo> = get_json(hub_url, "/components").await?;
    // The store each queue-manager uses, with its health (from its heartbeat metadata).
    let stores: Vec<serde_json::Value> = components
        .iter()
        .filter(|c| c.registration.component_type == "queue-manager")
        .filter_map(|c| {
            let store = c.registration.metadata.get("store")?;
            Some(json!({ "queue_manager": c.registration.component_id, "kind": store["kind"], "location": store["location"], "healthy": store["healthy"] }))
        })
        .collect();
    if json_out {
        println!(
            "{}",
            json!({ "hub_url": hub_url, "hub": hub, "stores": stores, "components": components })
        );
        return Ok(0);
    }
    println!(
        "hub {} at {}: {} (v{}, protocol {}, up {:.0}s, {} connections, {} routed, {} rejected)",
        hub.hub_id,
        hub_url,
        hub.status,
        hub.version,
        hub.protocol_version,
        hub.uptime_seconds,
        hub.connections,
        hub.messages_routed,
        hub.messages_rejected
    );
    if let Some(mesh) = &hub.mesh {
        println!(
            "mesh: Redis {}, peers [{}], {} relayed out, {} in, {} dropped",
            if mesh.redis_connected {
                "connected"
            } else {
                "UNREACHABLE (GZ1001)"
            },
            mesh.peers.join(", "),
            mesh.relayed_out,
            mesh.relayed_in,
            mesh.dropped
        );
        if mesh.id_conflicts > 0 {
            println!(
                "WARNING: another live hub uses the same hub id ({} messages seen): give every hub of a mesh its own --hub-id",
                mesh.id_conflicts
            );
        }
    }
    for st in &stores {
        println!(
            "store of {}: {} at {} ({})",
            st["queue_manager"].as_str().unwrap_or("?"),
            st["kind"].as_str().unwrap_or("?"),
            st["location"].as_str().unwrap_or("?"),
            if st["healthy"] == true {
                "healthy"
            } else {
                "UNHEALTHY"
            }
        );
    }
    if components.is_empty() {
        println!("no components registered");
        return Ok(0);
    }
    println!(
        "{:<20} {:<34} {:<9} {:>9}  {:<8} {:<7} {:<14} CAPABILITIES",
        "TYPE", "ID", "HEALTH", "LOAD/CAP", "HOST", "PID", "HUB"
    );
    for c in &components {
        let r = &c.registration;
        let health = serde_json::to_value(c.health)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "{:<20} {:<34} {:<9} {:>9}  {:<8} {:<7} {:<14} {}",
            r.component_type,
            r.component_id,
            health,
            format!("{}/{}", r.load.max(c.in_flight), r.capacity),
            r.host,
            r.pid,
            c.hub_id.as_deref().unwrap_or("-"),
            r.capabilities.join(",")
        );
    }
    Ok(0)
}
