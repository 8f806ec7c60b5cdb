//! Outcomes arriving one envelope after another are handled as one batch.
//!
//! Providers send each outcome as soon as nothing else is pending, so under load the engines
//! forward `task_outcomes` envelopes of one or two outcomes each. Handling each as a step of
//! its own costs a store transaction, a `tasks_finished` to the resolver and its reply per
//! task. [`Intake`] holds consecutive outcome envelopes and hands them over as one batch per
//! engine when the loop has nothing more waiting (`on_idle`), before any other message is
//! handled (so the order of everything else is kept), once [`MAX_OUTCOMES`] are held, or
//! when the oldest waited [`MAX_DELAY`] under a steady backlog. A lone outcome (a chain)
//! is handed over at once: the loop is idle right after it.

use std::time::Duration;

use gleitzeit_protocol::payloads::{TaskOutcome, TaskOutcomes};
use tokio::time::Instant;

/// Most outcomes held before they are handed over.
pub(crate) const MAX_OUTCOMES: usize = 1024;
/// Longest an outcome is held while messages keep arriving.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(20);

/// Outcomes held, by engine in arrival order.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    held: Vec<(String, Vec<TaskOutcome>)>,
    count: usize,
    oldest: Option<Instant>,
}

impl Intake {
    /// Holds an engine's outcomes; true when the batch is due now (full, or the oldest
    /// outcome waited long enough).
    pub(crate) fn hold(&mut self, engine: &str, batch: TaskOutcomes) -> bool {
        self.count += batch.outcomes.len();
        self.oldest.get_or_insert_with(Instant::now);
        match self.held.iter_mut().find(|(e, _)| e == engine) {
            Some((_, outcomes)) => outcomes.extend(batch.outcomes),
            None => self.held.push((engine.to_string(), batch.outcomes)),
        }
        self.count >= MAX_OUTCOMES || self.oldest.is_some_and(|t| t.elapsed() >= MAX_DELAY)
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Everything held, one batch per engine, in arrival order.
    pub(crate) fn take(&mut self) -> Vec<(String, TaskOutcomes)> {
        self.count = 0;
        self.oldest = None;
        std::mem::take(&mut self.held)
            .into_iter()
            .map(|(engine, outcomes)| {
                (
                    engine,
                    TaskOutcomes {
                        outcomes,
                        lease: None,
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(task: &str) -> TaskOutcome {
        TaskOutcome {
            workflow_id: "w".into(),
            task_id: task.into(),
            attempt: 1,
            result: None,
            error: None,
            provider_id: "p".into(),
            started_at: 0,
            finished_at: 0,
        }
    }

    fn batch(tasks: &[&str]) -> TaskOutcomes {
        TaskOutcomes {
            outcomes: tasks.iter().map(|t| outcome(t)).collect(),
            lease: None,
        }
    }

    #[test]
    fn outcomes_are_merged_per_engine_in_arrival_order() {
        let mut intake = Intake::default();
        assert!(!intake.hold("e-1", batch(&["a"])));
        assert!(!intake.hold("e-2", batch(&["b"])));
        assert!(!intake.hold("e-1", batch(&["c", "d"])));
        let taken = intake.take();
        assert!(intake.is_empty());
        let ids: Vec<(String, Vec<String>)> = taken
            .into_iter()
            .map(|(e, b)| (e, b.outcomes.into_iter().map(|o| o.task_id).collect()))
            .collect();
        assert_eq!(
            ids,
            [
                (
                    "e-1".to_string(),
                    vec!["a".to_string(), "c".into(), "d".into()]
                ),
                ("e-2".to_string(), vec!["b".to_string()]),
            ]
        );
    }

    #[test]
    fn a_full_batch_is_due_at_once() {
        let mut intake = Intake::default();
        let many: Vec<String> = (0..MAX_OUTCOMES).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(intake.hold("e-1", batch(&refs)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_held_too_long_makes_the_batch_due() {
        let mut intake = Intake::default();
        assert!(!intake.hold("e-1", batch(&["a"])));
        tokio::time::advance(MAX_DELAY).await;
        assert!(intake.hold("e-1", batch(&["b"])));
    }
}
