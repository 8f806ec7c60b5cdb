//! `gz health [--quiet] [--json]`: one verdict for scripts and probes. Exit 0 healthy,
//! 1 degraded (the suite runs work, but something is unhealthy, missing a twin, or an LLM
//! endpoint is down or cooling), 2 down (no hub, or a part without which no workflow can
//! run: queue-manager, dependency-resolver, execution-engine, any provider).

use gleitzeit_protocol::events::component_types as types;
use gleitzeit_protocol::payloads::{ComponentHealth, ComponentInfo, HubStatus};
use serde_json::{json, Value};

use crate::status::get_json;
use crate::CmdResult;

/// `gz health` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Print nothing; the exit code tells (0 healthy, 1 degraded, 2 down).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// The verdict of one check, or of all: the worst one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Healthy,
    Degraded,
    Down,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Down => "down",
        }
    }

    fn exit(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::Down => 2,
        }
    }
}

/// One check: what, its verdict, and why.
struct Check {
    name: String,
    verdict: Verdict,
    detail: String,
}

fn check(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        verdict,
        detail: detail.into(),
    }
}

/// The checks of a component table and the LLM endpoints.
fn checks(components: &[ComponentInfo], providers: &[Value]) -> Vec<Check> {
    let mut out = Vec::new();
    let role = |name: &str, of: &dyn Fn(&ComponentInfo) -> bool| {
        let all: Vec<&ComponentInfo> = components.iter().filter(|c| of(c)).collect();
        let up = all
            .iter()
            .filter(|c| c.health == ComponentHealth::Healthy)
            .count();
        match (up, all.len()) {
            (0, 0) => check(name, Verdict::Down, "none registered"),
            (0, n) => check(name, Verdict::Down, format!("0 of {n} healthy")),
            (u, n) if u < n => check(name, Verdict::Degraded, format!("{u} of {n} healthy")),
            (u, _) => check(name, Verdict::Healthy, format!("{u} healthy")),
        }
    };
    for ty in [
        types::QUEUE_MANAGER,
        types::DEPENDENCY_RESOLVER,
        types::EXECUTION_ENGINE,
    ] {
        out.push(role(ty, &|c| c.registration.component_type == ty));
    }
    out.push(role("providers", &|c| {
        c.registration.capacity > 0 && c.registration.capabilities.iter().any(|m| m.contains('/'))
    }));
    for c in components {
        let store = c.registration.metadata.get("store");
        if let Some(ok) = store
            .and_then(|s| s.get("healthy"))
            .and_then(Value::as_bool)
        {
            let kind = store
                .and_then(|s| s.get("kind"))
                .and_then(Value::as_str)
                .unwrap_or("store");
            out.push(check(
                format!("store of {}", c.registration.component_id),
                if ok {
                    Verdict::Healthy
                } else {
                    Verdict::Degraded
                },
                if ok {
                    format!("{kind} healthy")
                } else {
                    format!("{kind} unreachable")
                },
            ));
        }
    }
    let endpoints: Vec<&Value> = providers
        .iter()
        .flat_map(|p| p["endpoints"].as_array().into_iter().flatten())
        .collect();
    if !endpoints.is_empty() {
        let down: Vec<String> = endpoints
            .iter()
            .filter(|e| e["health"] != "healthy")
            .map(|e| {
                format!(
                    "{} {}",
                    e["name"].as_str().unwrap_or("?"),
                    e["health"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let verdict = if down.is_empty() {
            Verdict::Healthy
        } else {
            Verdict::Degraded
        };
        let detail = if down.is_empty() {
            format!("{} healthy", endpoints.len())
        } else {
            format!("{} of {}: {}", down.len(), endpoints.len(), down.join(", "))
        };
        out.push(check("llm endpoints", verdict, detail));
    }
    out
}

/// `gz health`.
pub async fn run(hub_url: &str, args: HealthArgs) -> CmdResult {
    let report = match get_json::<HubStatus>(hub_url, "/health").await {
        Err(e) => vec![check(
            "hub",
            Verdict::Down,
            format!("{}: {}", e.code, e.message),
        )],
        Ok(hub) => {
            let components: Vec<ComponentInfo> = get_json(hub_url, "/components").await?;
            let providers: Vec<Value> = get_json(hub_url, "/providers").await.unwrap_or_default();
            let mut all = vec![check(
                "hub",
                Verdict::Healthy,
                format!("{} up {:.0} s", hub.hub_id, hub.uptime_seconds),
            )];
            all.extend(checks(&components, &providers));
            all
        }
    };
    let overall = report
        .iter()
        .map(|c| c.verdict)
        .max()
        .unwrap_or(Verdict::Down);
    if args.json {
        let list: Vec<Value> = report
            .iter()
            .map(|c| json!({ "check": c.name, "status": c.verdict.as_str(), "detail": c.detail }))
            .collect();
        println!(
            "{}",
            json!({ "status": overall.as_str(), "hub_url": hub_url, "checks": list })
        );
    } else if !args.quiet {
        println!("{} ({hub_url})", overall.as_str());
        for c in &report {
            println!("  {:<9} {:<36} {}", c.verdict.as_str(), c.name, c.detail);
        }
    }
    Ok(overall.exit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::payloads::RegisterPayload;

    fn component(ty: &str, healthy: bool, capacity: u32, caps: &[&str]) -> ComponentInfo {
        ComponentInfo {
            registration: RegisterPayload {
                component_type: ty.into(),
                component_id: format!("{ty}-1"),
                capabilities: caps.iter().map(|c| c.to_string()).collect(),
                capacity,
                load: 0,
                version: String::new(),
                host: String::new(),
                pid: 0,
                metadata: Value::Null,
            },
            health: if healthy {
                ComponentHealth::Healthy
            } else {
                ComponentHealth::Unhealthy
            },
            in_flight: 0,
            connected_at: 0,
            last_heartbeat: 0,
            hub_id: None,
        }
    }

    fn worst(components: &[ComponentInfo], providers: &[Value]) -> Verdict {
        checks(components, providers)
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Down)
    }

    #[test]
    fn a_missing_part_is_down_an_unhealthy_twin_or_endpoint_degraded() {
        let suite = vec![
            component("queue-manager", true, 0, &[]),
            component("dependency-resolver", true, 0, &[]),
            component("execution-engine", true, 0, &[]),
            component("python-provider", true, 2, &["python/execute"]),
        ];
        assert_eq!(worst(&suite, &[]), Verdict::Healthy);
        assert_eq!(worst(&suite[1..], &[]), Verdict::Down);
        let mut twin = suite.clone();
        twin.push(component("python-provider", false, 2, &["python/execute"]));
        assert_eq!(worst(&twin, &[]), Verdict::Degraded);
        let cooling = json!([{ "endpoints": [{ "name": "gpu", "health": "cooldown" }] }]);
        let cooling = cooling.as_array().cloned().unwrap_or_default();
        assert_eq!(worst(&suite, &cooling), Verdict::Degraded);
    }
}
