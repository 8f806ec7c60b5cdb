//! Gleitzeit dependency-resolver: decides which tasks are ready and substitutes `${…}`
//! references in their parameters.
//!
//! It holds a [`plan::Plan`] per running workflow, built from the spec and the tasks that
//! already finished, so it can be killed at any time: a queue-manager that gets GZ3020
//! ("unknown workflow") from a restarted resolver sends `workflow_plan` again.
//!
//! Consumes: [`ResolverRequest`] (its `EVENTS`), plus `ping`, `shutdown` and `metrics`
//! (every component).
//! Emits: replies carrying a `Resolution`.

#![forbid(unsafe_code)]

pub mod plan;

use std::collections::HashMap;

use gleitzeit_component::{run_component, Component, Events, NoInternal};
use gleitzeit_hub_client::{connect_component, registration, ClientConfig, ClientError, HubClient};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types};
use gleitzeit_protocol::limits::{json_size_within, too_large, MAX_MESSAGE_BYTES};
use gleitzeit_protocol::metrics::MetricFamily;
use gleitzeit_protocol::payloads::FinishedTask;
use gleitzeit_protocol::payloads::Resolution;
use gleitzeit_protocol::requests::ResolverRequest;
use gleitzeit_protocol::Envelope;
use gleitzeit_runtime::Shutdown;
use serde::Deserialize;
use serde_json::json;
use tracing::{debug, warn};

use crate::plan::{Plan, PlanSpec};

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `dependency-resolver-<random>`).
    pub component_id: Option<String>,
    /// The API key to present (`None`: from the environment, the saved login or the local
    /// suite's key; see `gleitzeit_runtime::credentials`).
    pub api_key: Option<String>,
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub connection failed for good.
    #[error(transparent)]
    Hub(#[from] ClientError),
}

/// Connects to the hub, registers, and serves until `shutdown` fires or the hub asks it to stop.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let ty = component_types::DEPENDENCY_RESOLVER;
    let id = config
        .component_id
        .unwrap_or_else(|| gleitzeit_runtime::default_component_id(ty));
    let reg = registration(ty, id, vec!["dependency_resolution".into()], 0, json!({}));
    let Some((client, incoming)) = connect_component(
        ClientConfig::component(config.hub_url, reg)
            .with_optional_api_key(config.api_key.as_deref()),
        &shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    let mut resolver = Resolver {
        client: client.clone(),
        plans: HashMap::new(),
    };
    run_component(
        &mut resolver,
        Events::new(client.clone(), incoming),
        &shutdown,
    )
    .await;
    client.close().await;
    Ok(())
}

/// The resolver's state: a plan per workflow it holds.
struct Resolver {
    client: HubClient,
    plans: HashMap<String, Plan>,
}

/// Requests only: no internal messages, no tick.
impl Component for Resolver {
    type Internal = NoInternal;

    async fn on_envelope(&mut self, mut env: Envelope) {
        let request = match env.pieces.take() {
            // A big plan, read as it goes (`events::READ_IN_PIECES`).
            Some(pieces) => plan_from_pieces(pieces).map(|read| Request::Read(Box::new(read))),
            None => ResolverRequest::decode_envelope(&mut env).map(Request::Decoded),
        };
        let request = match request {
            Ok(request) => request,
            // `workflow_forget` is a notice: nobody waits for an answer to a bad one.
            Err(e) if env.event == events::WORKFLOW_FORGET => {
                warn!(error = %e, from = %env.source, "bad payload");
                return;
            }
            Err(e) => {
                let _ = self.client.respond(&env, Err(e));
                return;
            }
        };
        if let Some(result) = handle_guarded(&self.client, &mut self.plans, &env.event, request) {
            // Written straight to text: a resolution can name every task of a big workflow.
            let _ = self.client.respond_serialized(&env, result);
        }
    }

    fn metrics(&self) -> Vec<MetricFamily> {
        vec![MetricFamily::gauge(
            "gleitzeit_resolver_workflows",
            "Workflows whose plan the resolver holds.",
        )
        .with(&[], self.plans.len() as f64)]
    }
}

/// [`handle`], with a panic turned into a GZ8001 reply (the workflow's plan, possibly half
/// updated, is dropped: the queue-manager plans it again) and a reply too large for one hub
/// message turned into GZ7012 (never a message the hub would refuse).
fn handle_guarded(
    client: &HubClient,
    plans: &mut HashMap<String, Plan>,
    event: &str,
    request: Request,
) -> Option<Result<Resolution, GzError>> {
    let workflow_id = match &request {
        Request::Read(p) => p.workflow_id.clone(),
        Request::Decoded(ResolverRequest::Plan(p)) => p.workflow_id.clone(),
        Request::Decoded(ResolverRequest::Finished(f)) => f.workflow_id.clone(),
        Request::Decoded(ResolverRequest::Forget(r)) => r.workflow_id.clone(),
    };
    let result = match gleitzeit_runtime::catch_panic_sync(|| handle(client, plans, request)) {
        Ok(result) => result,
        Err(panic) => {
            warn!(%event, %panic, "handling a request panicked");
            plans.remove(&workflow_id);
            Some(Err(GzError::new(
                ErrorCode::Internal,
                format!("dependency-resolver failed on {event}: {panic}"),
            )))
        }
    };
    result.map(|r| r.and_then(|res| within_message_limit(res, &workflow_id, plans)))
}

/// A reply that fits in one hub message, or GZ7012 (the plan is dropped: what it released
/// cannot be delivered).
fn within_message_limit(
    res: Resolution,
    id: &str,
    plans: &mut HashMap<String, Plan>,
) -> Result<Resolution, GzError> {
    const MARGIN: usize = 1024 * 1024;
    let limit = MAX_MESSAGE_BYTES - MARGIN;
    if json_size_within(&res, limit).is_some() {
        return Ok(res);
    }
    plans.remove(id);
    warn!(workflow = %id, "resolution larger than one hub message; refusing the workflow");
    Err(too_large(
        "the resolution (ready tasks with their substituted parameters)",
        format!("more than {limit} bytes"),
        format!("{limit} bytes per message"),
    )
    .with_hint("pass less data between tasks (references to files rather than whole results)"))
}

/// A request as decoded, or a plan already read from its pieces.
enum Request {
    Decoded(ResolverRequest),
    Read(Box<PlanRead>),
}

fn handle(
    client: &HubClient,
    plans: &mut HashMap<String, Plan>,
    request: Request,
) -> Option<Result<Resolution, GzError>> {
    let request = match request {
        Request::Read(read) => return Some(plan(client, plans, *read)),
        Request::Decoded(request) => request,
    };
    match request {
        ResolverRequest::Plan(p) => Some((|| {
            // Only what the plan keeps of each task is read (`plan` module docs).
            let spec = PlanSpec::read(p.spec.text().unwrap_or("null")).map_err(invalid_spec)?;
            drop(p.spec);
            plan(
                client,
                plans,
                PlanRead {
                    workflow_id: p.workflow_id,
                    spec,
                    finished: p.finished,
                    started: p.started,
                },
            )
        })()),
        ResolverRequest::Finished(f) => Some((|| {
            let plan = plans.get_mut(&f.workflow_id).ok_or_else(|| {
                GzError::new(
                    ErrorCode::WorkflowNotFound,
                    format!("resolver does not hold workflow {}", f.workflow_id),
                )
                .with_hint("send workflow_plan again")
            })?;
            answer(client, plan.finish(&f.finished))
        })()),
        ResolverRequest::Forget(r) => {
            plans.remove(&r.workflow_id);
            None
        }
    }
}

/// A plan as read: what the plan keeps of its spec, and what already happened.
#[derive(Deserialize)]
struct PlanRead {
    workflow_id: String,
    spec: PlanSpec,
    #[serde(default)]
    finished: Vec<FinishedTask>,
    #[serde(default)]
    started: Vec<String>,
}

/// Builds and keeps the plan; the answer is what is ready now.
fn plan(
    client: &HubClient,
    plans: &mut HashMap<String, Plan>,
    p: PlanRead,
) -> Result<Resolution, GzError> {
    let (plan, res) = Plan::new(p.spec, &p.finished, &p.started)?;
    debug!(workflow = %p.workflow_id, ready = res.ready.len(), "planned");
    plans.insert(p.workflow_id, plan);
    answer(client, res)
}

/// A resolution as the reply, naming this resolver.
fn answer(client: &HubClient, mut res: Resolution) -> Result<Resolution, GzError> {
    res.resolver_id = client.id().to_string();
    Ok(res)
}

/// A plan that came in parts, read from its pieces as it goes: each piece is let go once
/// read, so the plan's text is never held whole beside the spec made of it.
fn plan_from_pieces(pieces: Vec<String>) -> Result<PlanRead, GzError> {
    serde_json::from_reader(std::io::BufReader::with_capacity(
        64 * 1024,
        PiecesReader::new(pieces),
    ))
    .map_err(invalid_spec)
}

fn invalid_spec(e: serde_json::Error) -> GzError {
    GzError::new(
        ErrorCode::ValidationFailed,
        format!("invalid workflow spec: {e}"),
    )
}

/// Reads text given as pieces, dropping each piece once it is read.
struct PiecesReader {
    pieces: std::collections::VecDeque<String>,
    /// How much of the first piece was read.
    at: usize,
}

impl PiecesReader {
    fn new(pieces: Vec<String>) -> Self {
        PiecesReader {
            pieces: pieces.into(),
            at: 0,
        }
    }
}

impl std::io::Read for PiecesReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(first) = self.pieces.front() {
            let rest = first.as_bytes().get(self.at..).unwrap_or_default();
            if rest.is_empty() {
                self.pieces.pop_front();
                self.at = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.at += n;
            return Ok(n);
        }
        Ok(0)
    }
}

impl Config {
    /// A resolver for tests, presenting `api_key` to the hub at `hub_url`.
    pub fn for_tests(hub_url: &str, api_key: &str) -> Config {
        Config {
            hub_url: hub_url.to_string(),
            component_id: None,
            api_key: Some(api_key.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::records::JsonText;
    use serde_json::json;

    #[test]
    fn a_plan_read_from_its_pieces_is_the_plan_read_whole() {
        let text = json!({
            "workflow_id": "wf-1",
            "spec": {"name": "w", "tasks": [
                {"id": "a", "method": "python/execute", "parameters": {"code": "ü = 1"}},
                {"id": "b", "method": "python/execute", "parameters": {"x": "${a.result}"}, "dependencies": ["a"]}
            ]},
            "started": ["a"]
        })
        .to_string();
        // Cut on character boundaries, as a sender does.
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let mut end = rest.len().min(7);
            while !rest.is_char_boundary(end) {
                end -= 1;
            }
            pieces.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
        let read = plan_from_pieces(pieces).expect("reads");
        assert_eq!(read.workflow_id, "wf-1");
        assert_eq!(read.started, ["a"]);
        let (mut plan, res) = Plan::new(read.spec, &read.finished, &read.started).expect("plan");
        assert!(res.ready.is_empty(), "a is started already");
        let res = plan.finish(&[FinishedTask {
            task_id: "a".into(),
            status: "completed".into(),
            result: Some(JsonText::of(&json!({"result": "ü"})).expect("json")),
        }]);
        assert_eq!(res.ready.len(), 1);
        assert_eq!(res.ready[0].params.to_value(), json!({"x": "ü"}));
    }

    #[test]
    fn pieces_that_do_not_make_a_plan_are_a_coded_error() {
        for pieces in [
            vec!["{\"workflow_id\":".to_owned()],
            vec!["nonsense".to_owned()],
            vec![],
        ] {
            let e = plan_from_pieces(pieces).err().expect("refused");
            assert_eq!(e.code, ErrorCode::ValidationFailed.as_str());
        }
    }
}
