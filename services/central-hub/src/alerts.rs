//! `system_alert`: what the hub sees that needs a person's attention, told to the room
//! `components` (monitors, dashboards, `gz events --follow`) across the mesh: a component
//! lost without deregistering, a component whose heartbeats are late, and an LLM endpoint
//! changing state in a provider's heartbeat (cooldown, unhealthy, recovered). The
//! queue-manager sends the backlog alerts itself.

use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::payloads::{ComponentInfo, SystemAlert};
use serde_json::{json, Value};
use tracing::warn;

use crate::sockets::broadcast;
use crate::HubState;

fn alert(
    kind: &str,
    severity: &str,
    message: String,
    info: &ComponentInfo,
    details: Value,
) -> SystemAlert {
    SystemAlert {
        kind: kind.to_string(),
        severity: severity.to_string(),
        message,
        component_id: Some(info.registration.component_id.clone()),
        component_type: Some(info.registration.component_type.clone()),
        details,
    }
}

async fn send(state: &HubState, alert: &SystemAlert) {
    warn!(kind = %alert.kind, severity = %alert.severity, "{}", alert.message);
    broadcast(state, rooms::COMPONENTS, events::SYSTEM_ALERT, alert, true).await;
}

/// A component of this hub left; an alert unless it said goodbye (`deregistered`).
pub(crate) async fn component_left(state: &HubState, info: &ComponentInfo, reason: &str) {
    if reason == "deregistered" {
        return;
    }
    let message = format!(
        "{} {} was lost ({reason})",
        info.registration.component_type, info.registration.component_id
    );
    let a = alert(
        "component_lost",
        "critical",
        message,
        info,
        json!({ "reason": reason }),
    );
    send(state, &a).await;
}

/// A component of this hub missed its heartbeats.
pub(crate) async fn component_unhealthy(state: &HubState, info: &ComponentInfo) {
    let message = format!(
        "{} {} is late with its heartbeats; nothing is routed to it",
        info.registration.component_type, info.registration.component_id
    );
    let a = alert("component_unhealthy", "warning", message, info, Value::Null);
    send(state, &a).await;
}

/// Endpoints (`metadata.endpoints`: `{name, health}`) whose health differs between two
/// heartbeats: `(name, before, now)`.
pub(crate) fn endpoint_changes(before: &Value, now: &Value) -> Vec<(String, String, String)> {
    let health = |m: &Value| -> Vec<(String, String)> {
        m.get("endpoints")
            .and_then(Value::as_array)
            .map(|eps| {
                eps.iter()
                    .filter_map(|e| {
                        Some((
                            e.get("name")?.as_str()?.to_string(),
                            e.get("health")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let old = health(before);
    health(now)
        .into_iter()
        .filter_map(|(name, h)| {
            let was = old
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, h)| h.clone())?;
            (was != h).then_some((name, was, h))
        })
        .collect()
}

/// Alerts for the endpoint changes of a provider's heartbeat.
pub(crate) async fn endpoints(state: &HubState, info: &ComponentInfo, before: &Value, now: &Value) {
    for (name, was, is) in endpoint_changes(before, now) {
        let (kind, severity) = match is.as_str() {
            "cooldown" => ("endpoint_cooldown", "warning"),
            "healthy" => ("endpoint_recovered", "info"),
            _ => ("endpoint_unhealthy", "warning"),
        };
        let message = format!(
            "LLM endpoint {name} of {} went from {was} to {is}",
            info.registration.component_id
        );
        let a = alert(
            kind,
            severity,
            message,
            info,
            json!({ "endpoint": name, "from": was, "to": is }),
        );
        send(state, &a).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_endpoints_whose_health_changed_are_reported() {
        let before = json!({ "endpoints": [{ "name": "a", "health": "healthy" }, { "name": "b", "health": "healthy" }] });
        let now = json!({ "endpoints": [{ "name": "a", "health": "cooldown" }, { "name": "b", "health": "healthy" }, { "name": "c", "health": "unhealthy" }] });
        assert_eq!(
            endpoint_changes(&before, &now),
            [(
                "a".to_string(),
                "healthy".to_string(),
                "cooldown".to_string()
            )]
        );
        assert!(endpoint_changes(&Value::Null, &now).is_empty());
    }
}
