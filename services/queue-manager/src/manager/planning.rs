//! Planning: sending a workflow to a dependency-resolver and telling it what finished.
//!
//! A plan carries the spec (at most `--max-workflow-bytes`, half the hub's message limit;
//! without the contents of the files the tasks name, which only providers need) and the
//! tasks that finished already, with their results. Finished tasks that do not fit
//! beside the spec follow as `tasks_finished` parts, in order, to the resolver that took
//! the plan: a plan is never cut short or dropped for its size.
//!
//! When the resolver refuses a plan for good (a non-retryable error such as GZ3003 or
//! GZ7012) the workflow fails with that error; other failures (no resolver yet, timeouts)
//! plan again after a pause that doubles up to a minute, one re-plan at a time.

use std::collections::HashMap;
use std::time::Duration;

use gleitzeit_hub_client::{HubClient, TextPiece};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types};
use gleitzeit_protocol::limits::{json_size_within, MAX_MESSAGE_BYTES};
use gleitzeit_protocol::payloads::{FinishedTask, Resolution, TasksFinished, WorkflowRef};
use gleitzeit_protocol::Envelope;
use gleitzeit_protocol::{to_payload, Target};
use gleitzeit_store::{JsonText, TaskStatus};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Internal, Manager};
use crate::machine::Now;

/// The most finished tasks (as JSON) sent in one message.
const PLAN_PART_BYTES: usize = 16 * 1024 * 1024;
/// Room left in a message for the envelope and the other fields.
const MESSAGE_MARGIN: usize = 1024 * 1024;
/// The longest pause before planning a workflow again after a failed attempt.
const REPLAN_MAX_PAUSE: Duration = Duration::from_secs(60);
/// A new workflow's spec of at most this many bytes goes to a resolver while it is stored
/// ([`Manager::plan_new`]).
pub(super) const EARLY_PLAN_BYTES: usize = 4 * 1024 * 1024;
/// How long a resolver request may take.
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(20);

/// Where each workflow's plan stands.
#[derive(Debug, Default)]
struct PlanState {
    /// The resolver that took the plan.
    resolver: Option<String>,
    /// Resolver requests that failed since the last answer (for the re-plan pause).
    failures: u32,
    /// A re-plan is scheduled already.
    replan_pending: bool,
}

/// Plans of the workflows in memory.
#[derive(Debug, Default)]
pub(crate) struct Planner {
    states: HashMap<String, PlanState>,
}

impl Planner {
    /// A resolver answered for `id`.
    pub(crate) fn answered(&mut self, id: &str, res: &Resolution) {
        let st = self.states.entry(id.to_string()).or_default();
        st.failures = 0;
        if !res.resolver_id.is_empty() {
            st.resolver = Some(res.resolver_id.clone());
        }
    }

    /// A scheduled re-plan is due.
    pub(crate) fn replan_due(&mut self, id: &str) {
        if let Some(st) = self.states.get_mut(id) {
            st.replan_pending = false;
        }
    }

    /// Tells the workflow's resolver which tasks finished; its answer comes back as an
    /// [`Internal::Resolution`].
    pub(crate) fn tell(
        &self,
        client: &HubClient,
        tx: &mpsc::UnboundedSender<Internal>,
        id: &str,
        finished: Vec<FinishedTask>,
    ) {
        if finished.is_empty() {
            return;
        }
        let target = match self.states.get(id).and_then(|s| s.resolver.clone()) {
            Some(r) => Target::Component(r),
            None => Target::Type(component_types::DEPENDENCY_RESOLVER.into()),
        };
        // Sent now, so that it leaves before the replies and events of the steps that follow
        // (a chain's next task waits for the resolver's answer); only the wait is spawned.
        let request = Envelope::new(
            target,
            events::TASKS_FINISHED,
            finished_payload(id, finished),
        );
        let pending = client.send_request(request);
        let (tx, id) = (tx.clone(), id.to_string());
        tokio::spawn(async move {
            let answer = async move { pending?.reply_as::<Resolution>(RESOLVER_TIMEOUT).await };
            let result = gleitzeit_runtime::catch_panic(answer)
                .await
                .unwrap_or_else(|panic| {
                    Err(GzError::new(
                        ErrorCode::Internal,
                        format!("resolver request panicked: {panic}"),
                    ))
                });
            let _ = tx.send(Internal::Resolution {
                workflow_id: id,
                result,
            });
        });
    }

    /// The workflow finished: its resolver may drop it.
    pub(crate) fn forget(&mut self, client: &HubClient, id: &str) {
        if let Some(r) = self.states.remove(id).and_then(|s| s.resolver) {
            let _ = client.emit(
                Target::Component(r),
                events::WORKFLOW_FORGET,
                to_payload(&WorkflowRef::id(id.to_string())).unwrap_or_default(),
            );
        }
    }
}

/// The spec the resolver gets: without the contents of the files its tasks name (they stay
/// here and go out with each task, `machine/leases.rs`; the resolver substitutes
/// parameters only). A spec naming no files is passed on as it is, unparsed.
fn without_attachments(spec: JsonText) -> JsonText {
    // Compact JSON from serde has `"attachments":{"` only where a non-empty map of that
    // name is (inside a string the quotes would be escaped).
    if !spec
        .text()
        .is_some_and(|t| t.contains("\"attachments\":{\""))
    {
        return spec;
    }
    let mut value = spec.to_value();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("attachments");
    }
    JsonText::of(&value).unwrap_or(spec)
}

impl Manager {
    /// The plan cannot go out now (what it needs could not be read from the store, or it
    /// could not be written): it counts as a failed resolver request.
    fn plan_later(&self, id: &str, e: GzError) {
        warn!(workflow = %id, error = %e, "cannot plan the workflow now");
        let _ = self.tx.send(Internal::Resolution {
            workflow_id: id.to_string(),
            result: Err(e),
        });
    }

    /// Sends the whole workflow (with what already finished) to a resolver. The spec is
    /// read from the store unless the caller has it at hand.
    pub(super) async fn plan(&mut self, id: &str, spec: Option<JsonText>) {
        let spec = match spec {
            Some(s) => without_attachments(s),
            None => {
                let wid = id.to_string();
                match self.persistence.call(move |s| s.workflow(&wid)).await {
                    Ok(Some(w)) => without_attachments(w.spec),
                    Ok(None) => return,
                    Err(e) => return self.plan_later(id, e),
                }
            }
        };
        // Ended tasks of a big workflow have their results in the store only.
        let stored = match self.machine.workflow(id) {
            Some(wf) if wf.keeps_results_in_store() && wf.counts.terminal() > 0 => {
                let wid = id.to_string();
                match self.persistence.call(move |s| s.tasks(&wid)).await {
                    Ok(tasks) => tasks,
                    Err(e) => return self.plan_later(id, e),
                }
            }
            _ => Vec::new(),
        };
        // The plan carries every end, also those kept back from the resolver.
        self.machine.forget_untold(id);
        let Some(wf) = self.machine.workflow(id) else {
            return;
        };
        self.planner.states.entry(id.to_string()).or_default();
        let mut finished = Vec::new();
        let mut started = Vec::new();
        for (i, t) in wf.tasks.iter().enumerate() {
            // The stored record of an ended task (stored before memory shows it ended).
            let t = match stored.get(i) {
                Some(s) if s.task_id == t.task_id && t.status.is_terminal() => s,
                _ => t,
            };
            match t.status {
                TaskStatus::Pending => {}
                TaskStatus::Queued | TaskStatus::Running | TaskStatus::Retrying => {
                    started.push(t.task_id.to_string())
                }
                TaskStatus::Completed => finished.push(FinishedTask {
                    task_id: t.task_id.to_string(),
                    status: "completed".into(),
                    result: t.result.clone(),
                }),
                other => finished.push(FinishedTask {
                    task_id: t.task_id.to_string(),
                    status: serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    result: crate::machine::finished_result(t),
                }),
            }
        }
        let room = MAX_MESSAGE_BYTES.saturating_sub(MESSAGE_MARGIN);
        let spec_size = spec.len().min(room);
        // Started tasks only spare the resolver from reporting them ready again (the
        // queue-manager ignores tasks that are not pending), so they are left out rather
        // than overflow the message.
        let started_size = json_size_within(&started, room).unwrap_or(room);
        let part_room = room.saturating_sub(PLAN_PART_BYTES);
        let mut head = spec_size.saturating_add(started_size);
        if head > part_room {
            debug!(workflow = %id, "started tasks left out of the plan to keep it within one message");
            started.clear();
            head = spec_size;
        }
        let mut parts = split_parts(finished, PLAN_PART_BYTES);
        let first = if head <= part_room {
            parts.pop_front().unwrap_or_default()
        } else {
            Vec::new()
        };
        if !parts.is_empty() {
            debug!(workflow = %id, parts = parts.len() + 1, "plan sent in parts");
        }
        self.dispatch_plan(id, spec, &first, &started, parts);
    }

    /// Sends a new workflow's plan (nothing of it finished yet; `started` names the tasks
    /// stored queued, `machine/opening.rs`) while it is being stored: the resolver works out the plan as the store writes the tasks, instead of
    /// after. Only for a spec of at most [`EARLY_PLAN_BYTES`] (the plan is a second copy of
    /// it for as long as the store takes) whose workflow id the store does not hold. If the
    /// workflow is not stored after all, its answer finds no workflow here and the resolver
    /// is told to forget it (`Manager::on_internal`).
    pub(super) fn plan_new(&mut self, id: &str, spec: JsonText, started: &[String]) {
        self.planner.states.entry(id.to_string()).or_default();
        self.dispatch_plan(
            id,
            without_attachments(spec),
            &[],
            started,
            Default::default(),
        );
    }

    /// Writes the plan and sends it; the answer comes back as an [`Internal::Resolution`].
    fn dispatch_plan(
        &self,
        id: &str,
        spec: JsonText,
        first: &[FinishedTask],
        started: &[String],
        parts: std::collections::VecDeque<Vec<FinishedTask>>,
    ) {
        // Written as pieces of text around the spec as it is: never as a tree of values
        // (~3 KB per task), nor copied with the rest into one buffer.
        let payload = match plan_text(id, spec, first, started) {
            Ok(text) => text,
            Err(e) => {
                let e = GzError::new(ErrorCode::Internal, format!("cannot write the plan: {e}"));
                return self.plan_later(id, e);
            }
        };
        let (client, tx, id) = (self.client.clone(), self.tx.clone(), id.to_string());
        tokio::spawn(async move {
            let sent = gleitzeit_runtime::catch_panic(send_plan(&client, &tx, &id, payload, parts));
            if let Err(panic) = sent.await {
                let _ = tx.send(Internal::Resolution {
                    workflow_id: id,
                    result: Err(GzError::new(
                        ErrorCode::Internal,
                        format!("planning panicked: {panic}"),
                    )),
                });
            }
        });
    }

    /// A resolver request failed: the workflow fails when the error is final, else it is
    /// planned again after a pause (one re-plan pending at a time).
    pub(super) async fn plan_failed(&mut self, id: &str, error: GzError) {
        if !self.machine.contains(id) {
            // A plan sent before its workflow was stored, which then was not.
            self.planner.states.remove(id);
            return;
        }
        let st = self.planner.states.entry(id.to_string()).or_default();
        st.resolver = None;
        let final_error = !error.retryable && !error.is(ErrorCode::WorkflowNotFound);
        if final_error {
            warn!(workflow = %id, error = %error, "the resolver refused the workflow; failing it");
            if let Some(step) = self.machine.fail(id, &error, Now::current()) {
                self.run(step).await;
            }
            return;
        }
        if st.replan_pending {
            return;
        }
        st.replan_pending = true;
        st.failures = st.failures.saturating_add(1);
        // A resolver that lost the workflow (restarted) is re-planned at once; other
        // failures (no resolver yet, timeouts) after a pause that grows.
        let pause = if st.failures == 1 && error.is(ErrorCode::WorkflowNotFound) {
            Duration::ZERO
        } else {
            replan_pause(st.failures)
        };
        warn!(workflow = %id, error = %error, ?pause, "resolver request failed; planning again");
        let (tx, workflow_id) = (self.tx.clone(), id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(pause).await;
            let _ = tx.send(Internal::Replan { workflow_id });
        });
    }
}

/// 0.5 s after the first failure, doubling, at most [`REPLAN_MAX_PAUSE`].
fn replan_pause(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::from_millis(500)
        .saturating_mul(1u32 << doublings)
        .min(REPLAN_MAX_PAUSE)
}

/// Splits finished tasks into parts of at most `budget` bytes of JSON each (a single task
/// larger than that is a part of its own).
fn split_parts(
    finished: Vec<FinishedTask>,
    budget: usize,
) -> std::collections::VecDeque<Vec<FinishedTask>> {
    let mut parts = std::collections::VecDeque::new();
    let (mut part, mut size) = (Vec::new(), 0usize);
    for f in finished {
        let bytes = json_size_within(&f, usize::MAX).unwrap_or(usize::MAX);
        if !part.is_empty() && size.saturating_add(bytes) > budget {
            parts.push_back(std::mem::take(&mut part));
            size = 0;
        }
        size = size.saturating_add(bytes);
        part.push(f);
    }
    if !part.is_empty() {
        parts.push_back(part);
    }
    parts
}

fn finished_payload(id: &str, finished: Vec<FinishedTask>) -> Value {
    serde_json::to_value(TasksFinished {
        workflow_id: id.to_string(),
        finished,
    })
    .unwrap_or(Value::Null)
}

/// One request to a resolver, its answer read as a [`Resolution`] (straight from its text).
async fn ask(
    client: &HubClient,
    target: Target,
    event: &'static str,
    payload: Value,
) -> Result<Resolution, GzError> {
    let request = Envelope::new(target, event, payload);
    client
        .send_request(request)?
        .reply_as::<Resolution>(RESOLVER_TIMEOUT)
        .await
}

/// The payload of a `workflow_plan` ([`gleitzeit_protocol::payloads::WorkflowPlan`]) as pieces of JSON text: the spec
/// as it is, between a head and the other fields written here.
fn plan_text(
    id: &str,
    spec: JsonText,
    finished: &[FinishedTask],
    started: &[String],
) -> Result<Vec<TextPiece>, serde_json::Error> {
    /// `WorkflowPlan` but its spec.
    #[derive(Serialize)]
    struct Rest<'a> {
        workflow_id: &'a str,
        finished: &'a [FinishedTask],
        started: &'a [String],
    }
    let mut rest = serde_json::to_string(&Rest {
        workflow_id: id,
        finished,
        started,
    })?;
    // `{"workflow_id":…}` continues the object the head opened.
    rest.replace_range(..1, ",");
    Ok(vec![
        TextPiece::Owned(r#"{"spec":"#.to_owned()),
        TextPiece::Json(spec),
        TextPiece::Owned(rest),
    ])
}

/// Sends the plan, then the remaining parts of the finished tasks to the same resolver,
/// each answer reported as it comes; stops at the first failure (which re-plans).
async fn send_plan(
    client: &HubClient,
    tx: &mpsc::UnboundedSender<Internal>,
    id: &str,
    plan: Vec<TextPiece>,
    parts: std::collections::VecDeque<Vec<FinishedTask>>,
) {
    let to_type = Target::Type(component_types::DEPENDENCY_RESOLVER.into());
    // A plan of megabytes goes in parts (`docs/protocol.md`, "Big messages in parts").
    let head = Envelope::new(to_type.clone(), events::WORKFLOW_PLAN, Value::Null);
    let result = match client.send_request_of_text(head, plan) {
        Ok(pending) => pending.reply_as::<Resolution>(RESOLVER_TIMEOUT).await,
        Err(e) => Err(e),
    };
    let mut target = match &result {
        Ok(res) if !res.resolver_id.is_empty() => Target::Component(res.resolver_id.clone()),
        _ => to_type,
    };
    let mut failed = result.is_err();
    let _ = tx.send(Internal::Resolution {
        workflow_id: id.to_string(),
        result,
    });
    for part in parts {
        if failed {
            return;
        }
        let result = ask(
            client,
            target.clone(),
            events::TASKS_FINISHED,
            finished_payload(id, part),
        )
        .await;
        failed = result.is_err();
        if let Ok(res) = &result {
            if !res.resolver_id.is_empty() {
                target = Target::Component(res.resolver_id.clone());
            }
        }
        let _ = tx.send(Internal::Resolution {
            workflow_id: id.to_string(),
            result,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::payloads::WorkflowPlan;
    use serde_json::json;

    fn done(id: &str, bytes: usize) -> FinishedTask {
        FinishedTask {
            task_id: id.into(),
            status: "completed".into(),
            result: Some(JsonText::of_value(&json!("x".repeat(bytes)))),
        }
    }

    #[test]
    fn finished_tasks_are_split_into_parts_within_the_budget_and_none_is_lost() {
        let finished: Vec<_> = (0..10).map(|i| done(&format!("t{i}"), 100)).collect();
        let parts = split_parts(finished, 350);
        assert!(parts.len() >= 4, "{}", parts.len());
        let ids: Vec<_> = parts.iter().flatten().map(|f| f.task_id.clone()).collect();
        assert_eq!(ids.len(), 10);
        assert_eq!(ids[9], "t9");
        for part in &parts {
            assert!(json_size_within(part, 350 + 200).is_some());
        }
        let big = split_parts(vec![done("a", 1000), done("b", 1)], 10);
        assert_eq!(big.len(), 2, "an oversized task is a part of its own");
    }

    #[test]
    fn a_plan_written_around_its_spec_reads_as_the_plan() {
        let spec = JsonText::of_value(&json!({"name": "w", "tasks": [{"id": "a"}]}));
        let finished = vec![done("a", 3)];
        let started = vec!["b".to_string()];
        let text = plan_text("wf-1", spec.clone(), &finished, &started).expect("written");
        let joined: String = text
            .iter()
            .map(|p| match p {
                TextPiece::Owned(s) => s.as_str(),
                TextPiece::Json(j) => j.text().unwrap_or("null"),
            })
            .collect();
        let plan: WorkflowPlan = serde_json::from_str(&joined).expect("a plan");
        assert_eq!(
            plan,
            WorkflowPlan {
                workflow_id: "wf-1".into(),
                spec,
                finished,
                started,
            }
        );
        assert!(
            matches!(&text[1], TextPiece::Json(_)),
            "the spec is not copied"
        );
    }

    #[test]
    fn re_plans_back_off_up_to_a_minute() {
        assert_eq!(replan_pause(1), Duration::from_millis(500));
        assert_eq!(replan_pause(2), Duration::from_secs(1));
        assert_eq!(replan_pause(50), REPLAN_MAX_PAUSE);
        assert_eq!(replan_pause(u32::MAX), REPLAN_MAX_PAUSE);
    }
}
