//! Outcomes on their way to the queue-managers, sent together.
//!
//! A provider sends each outcome as soon as it has it, so under load the engine receives
//! one `task_outcomes` envelope per task or two. [`Outgoing`] collects what is to be
//! forwarded and the engine sends it when its loop has nothing more waiting (`on_idle`) or
//! on its tick: one envelope per queue-manager for everything that finished meanwhile. A
//! lone outcome (a chain) leaves at once, since the loop is idle right after it. A list is
//! sent early once it holds [`MAX_OUTCOMES`] outcomes or [`MAX_BYTES`] of results and
//! errors, so a message never comes near the hub's limit.

use gleitzeit_protocol::payloads::TaskOutcome;

/// Most outcomes in one envelope.
pub(crate) const MAX_OUTCOMES: usize = 512;
/// Most bytes of results and errors (as JSON) in one envelope.
pub(crate) const MAX_BYTES: usize = 8 << 20;
/// What an outcome costs besides its result and error (ids, times; an estimate).
const OVERHEAD: usize = 256;

/// Outcomes to send, by queue-manager in first-use order.
#[derive(Debug, Default)]
pub(crate) struct Outgoing {
    lists: Vec<(String, Vec<TaskOutcome>, usize)>,
}

impl Outgoing {
    /// Adds an outcome for `qm` whose result and error are `bytes` of JSON; returns a list
    /// to send now when adding it would make the queue-manager's list too big (the list
    /// before it, then held no more).
    pub(crate) fn push(
        &mut self,
        qm: &str,
        outcome: TaskOutcome,
        bytes: usize,
    ) -> Option<Vec<TaskOutcome>> {
        let size = OVERHEAD + bytes;
        let at = match self.lists.iter().position(|(q, _, _)| q == qm) {
            Some(at) => at,
            None => {
                self.lists.push((qm.to_string(), Vec::new(), 0));
                self.lists.len() - 1
            }
        };
        let (_, list, held) = &mut self.lists[at];
        let full = !list.is_empty() && (list.len() >= MAX_OUTCOMES || *held + size > MAX_BYTES);
        let ready = full.then(|| {
            *held = 0;
            std::mem::take(list)
        });
        list.push(outcome);
        *held += size;
        ready
    }

    /// Whether nothing waits to be sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Everything to send, one list per queue-manager.
    pub(crate) fn take(&mut self) -> Vec<(String, Vec<TaskOutcome>)> {
        std::mem::take(&mut self.lists)
            .into_iter()
            .filter(|(_, list, _)| !list.is_empty())
            .map(|(qm, list, _)| (qm, list))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(task: &str, result: serde_json::Value) -> TaskOutcome {
        TaskOutcome {
            workflow_id: "w".into(),
            task_id: task.into(),
            attempt: 1,
            result: Some(gleitzeit_protocol::records::JsonText::of_value(&result)),
            error: None,
            provider_id: "p".into(),
            started_at: 0,
            finished_at: 0,
        }
    }

    #[test]
    fn outcomes_wait_per_queue_manager_until_taken() {
        let mut out = Outgoing::default();
        assert!(out.push("qm-1", outcome("a", json!(1)), 1).is_none());
        assert!(out.push("qm-2", outcome("b", json!(2)), 1).is_none());
        assert!(out.push("qm-1", outcome("c", json!(3)), 1).is_none());
        let lists = out.take();
        assert!(out.is_empty());
        let ids: Vec<(String, Vec<String>)> = lists
            .into_iter()
            .map(|(qm, l)| (qm, l.into_iter().map(|o| o.task_id).collect()))
            .collect();
        assert_eq!(
            ids,
            [
                ("qm-1".to_string(), vec!["a".to_string(), "c".to_string()]),
                ("qm-2".to_string(), vec!["b".to_string()]),
            ]
        );
    }

    #[test]
    fn a_full_list_goes_out_before_the_next_outcome_joins() {
        let mut out = Outgoing::default();
        for i in 0..MAX_OUTCOMES {
            assert!(out
                .push("qm", outcome(&i.to_string(), json!(i)), 1)
                .is_none());
        }
        let sent = out.push("qm", outcome("last", json!(0)), 1).expect("full");
        assert_eq!(sent.len(), MAX_OUTCOMES);
        let rest = out.take();
        assert_eq!(rest[0].1.len(), 1);

        // By bytes: two results of 5 MiB never travel together.
        let big = 5 << 20;
        assert!(out.push("qm", outcome("a", json!("a")), big).is_none());
        let sent = out
            .push("qm", outcome("b", json!("b")), big)
            .expect("over the byte budget");
        assert_eq!(sent.len(), 1);
        assert_eq!(out.take()[0].1[0].task_id, "b");
    }
}
