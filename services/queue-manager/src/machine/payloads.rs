//! What the machine says of its tasks and workflows as JSON: the result the resolver
//! learns of a finished task, a task event's payload, and any event payload as text.

use gleitzeit_protocol::replies::TaskEventRef;
use gleitzeit_store::{JsonText, TaskRecord, TaskStatus};
use serde_json::value::{to_raw_value, RawValue};

use super::Wf;

/// What the resolver learns of a finished task: a completed one's result, a failed one's
/// error as `{error}` (for `${<template>.results}` of a batch).
pub(crate) fn finished_result(t: &TaskRecord) -> Option<JsonText> {
    match t.status {
        TaskStatus::Completed => t.result.clone(),
        _ => t
            .error
            .as_ref()
            .and_then(|error| JsonText::of(&serde_json::json!({ "error": error })).ok()),
    }
}

/// The payload of a task event, written from the task's record (nothing copied first).
pub(super) fn task_event(wf: &Wf, i: usize) -> Box<RawValue> {
    let t = &wf.tasks[i];
    let duration = match (t.started_at, t.finished_at) {
        (Some(s), Some(f)) => Some((f.saturating_sub(s)) as f64 / 1000.0),
        _ => None,
    };
    payload(TaskEventRef {
        workflow_id: &wf.record.id,
        task_id: &t.task_id,
        task_name: &t.name,
        method: &t.method,
        status: t.status,
        attempt: t.attempts,
        result: t.result.as_ref(),
        error: t.error.as_ref(),
        provider_id: t.provider_id.as_deref(),
        endpoint: t.provider_id.as_deref(),
        duration_seconds: duration,
    })
}

/// An event payload as JSON text (the event log numbers it by writing in `seq`).
pub(crate) fn payload<T: serde::Serialize>(event: T) -> Box<RawValue> {
    // The payloads are structs of strings, numbers and JSON values: they always serialize.
    to_raw_value(&event).unwrap_or_else(|_| RawValue::NULL.to_owned())
}
