//! `gz functions list`: every named function the connected providers declare
//! (`python/function`, `docs/protocol.md` §5.7), with its signature, description and the
//! providers serving it, read from the registration metadata in the hub's component table.

use std::collections::BTreeMap;

use gleitzeit_protocol::payloads::{ComponentHealth, ComponentInfo};
use serde_json::{json, Value};

use crate::status::get_json;
use crate::CmdResult;

/// `gz functions` subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct FunctionsArgs {
    #[command(subcommand)]
    pub command: FunctionsCommand,
}

/// What to do with functions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum FunctionsCommand {
    /// Every function connected providers declare: signature, description, providers.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
        /// Only the functions of this service (`builtin` for the python-provider's).
        #[arg(long)]
        service: Option<String>,
    },
}

impl FunctionsArgs {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match &self.command {
            FunctionsCommand::List { json, .. } => *json,
        }
    }
}

/// One function as listed: its declaration and who serves it.
struct Listed {
    declaration: Value,
    providers: Vec<String>,
    healthy: bool,
}

/// The declared functions of `components`, by (service, name).
fn collect(components: &[ComponentInfo]) -> BTreeMap<(String, String), Listed> {
    let mut found: BTreeMap<(String, String), Listed> = BTreeMap::new();
    for c in components {
        let r = &c.registration;
        let declared = r.metadata.get("functions").and_then(Value::as_array);
        for f in declared.into_iter().flatten() {
            let Some(name) = f.get("name").and_then(Value::as_str) else {
                continue;
            };
            let service = f
                .get("service_name")
                .or_else(|| r.metadata.get("service_name"))
                .and_then(Value::as_str)
                .unwrap_or(&r.component_type)
                .to_string();
            let healthy = c.health == ComponentHealth::Healthy;
            let entry = found
                .entry((service, name.to_string()))
                .or_insert_with(|| Listed {
                    declaration: f.clone(),
                    providers: Vec::new(),
                    healthy: false,
                });
            entry.providers.push(r.component_id.clone());
            entry.healthy |= healthy;
        }
    }
    found
}

/// `gz functions …`.
pub async fn run(hub_url: &str, args: FunctionsArgs) -> CmdResult {
    let FunctionsCommand::List { json, service } = args.command;
    let components: Vec<ComponentInfo> = get_json(hub_url, "/components").await?;
    let listed: Vec<((String, String), Listed)> = collect(&components)
        .into_iter()
        .filter(|((s, _), _)| service.as_ref().is_none_or(|want| want == s))
        .collect();
    if json {
        let doc: Vec<Value> = listed
            .iter()
            .map(|((service, name), l)| {
                let d = &l.declaration;
                json!({
                    "name": name,
                    "service_name": service,
                    "signature": d.get("signature"),
                    "description": d.get("description"),
                    "category": d.get("category"),
                    "timeout": d.get("timeout"),
                    "is_async": d.get("is_async"),
                    "parameters": d.get("parameters"),
                    "returns": d.get("returns"),
                    "providers": l.providers,
                    "healthy": l.healthy,
                })
            })
            .collect();
        println!("{}", json!({ "functions": doc }));
        return Ok(0);
    }
    if listed.is_empty() {
        println!("no functions declared by the connected providers");
        return Ok(0);
    }
    println!(
        "{:<14} {:<10} SIGNATURE / DESCRIPTION",
        "SERVICE", "PROVIDERS"
    );
    for ((service, name), l) in &listed {
        let d = &l.declaration;
        let signature = d
            .get("signature")
            .and_then(Value::as_str)
            .unwrap_or(name.as_str());
        let providers = if l.healthy {
            l.providers.len().to_string()
        } else {
            format!("{} (down)", l.providers.len())
        };
        println!("{service:<14} {providers:<10} {signature}");
        if let Some(description) = d.get("description").and_then(Value::as_str) {
            println!("{:<25}   {description}", "");
        }
    }
    Ok(0)
}
