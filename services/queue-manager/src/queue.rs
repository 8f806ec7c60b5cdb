//! The ready queue: one priority heap per method, so a lease for some methods never walks
//! past tasks of others. Within a method: urgent > high > normal > low, FIFO within one.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

/// A queued task.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Priority level (higher first).
    pub(crate) prio: u8,
    /// Arrival order (lower first).
    pub(crate) seq: u64,
    /// Workflow id.
    pub(crate) wf: Arc<str>,
    /// Task index in the workflow.
    pub(crate) task: usize,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.prio == other.prio && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.prio
            .cmp(&other.prio)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Queued tasks by method.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    heaps: HashMap<String, BinaryHeap<Entry>>,
    /// The arrival number of the last task queued.
    seq: u64,
}

impl ReadyQueue {
    /// Queues task `task` of workflow `wf` (method `method`, priority `prio`) behind every
    /// task of its priority already queued; returns the entry's arrival number.
    pub(crate) fn enqueue(&mut self, method: &str, prio: u8, wf: Arc<str>, task: usize) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        self.push(
            method,
            Entry {
                prio,
                seq,
                wf,
                task,
            },
        );
        seq
    }

    /// Puts back an entry that was taken (in its old place: same priority and number).
    pub(crate) fn restore(&mut self, method: &str, entry: Entry) {
        self.push(method, entry);
    }

    /// Queues an entry of `method` as it is.
    fn push(&mut self, method: &str, entry: Entry) {
        match self.heaps.get_mut(method) {
            Some(h) => h.push(entry),
            None => {
                self.heaps
                    .insert(method.to_string(), BinaryHeap::from([entry]));
            }
        }
    }

    /// True when nothing is queued (entries may still be stale).
    pub(crate) fn is_empty(&self) -> bool {
        self.heaps.values().all(BinaryHeap::is_empty)
    }

    /// Methods with queued entries.
    pub(crate) fn methods(&self) -> Vec<String> {
        self.heaps
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// Removes and returns every entry of `method`.
    /// How many entries of `method` are queued (stale ones included).
    pub(crate) fn count(&self, method: &str) -> usize {
        self.heaps.get(method).map_or(0, BinaryHeap::len)
    }

    pub(crate) fn drain(&mut self, method: &str) -> Vec<Entry> {
        self.heaps
            .remove(method)
            .map(BinaryHeap::into_vec)
            .unwrap_or_default()
    }

    /// Takes up to `slots[method]` entries per method, best first, skipping entries that
    /// `valid` rejects (tasks cancelled or already taken); each with the method (routing
    /// key) it was queued under.
    pub(crate) fn take<'s>(
        &mut self,
        slots: &'s BTreeMap<String, u32>,
        valid: impl Fn(&Entry) -> bool,
    ) -> Vec<(&'s str, Entry)> {
        let mut out = Vec::new();
        for (method, &free) in slots {
            let Some(heap) = self.heaps.get_mut(method) else {
                continue;
            };
            let mut n = free;
            while n > 0 {
                let Some(e) = heap.pop() else { break };
                if valid(&e) {
                    n -= 1;
                    out.push((method.as_str(), e));
                }
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(prio: u8, seq: u64) -> Entry {
        Entry {
            prio,
            seq,
            wf: Arc::from("w"),
            task: seq as usize,
        }
    }

    #[test]
    fn priority_then_fifo_per_method() {
        let mut q = ReadyQueue::default();
        q.push("a", e(1, 1));
        q.push("a", e(3, 2));
        q.push("a", e(1, 3));
        q.push("b", e(3, 4));
        let slots = BTreeMap::from([("a".to_string(), 2)]);
        let got: Vec<u64> = q.take(&slots, |_| true).iter().map(|x| x.1.seq).collect();
        assert_eq!(got, [2, 1]);
        assert_eq!(slots["a"], 2, "the request's counts are read, not used up");
        assert!(!q.is_empty());
    }

    #[test]
    fn stale_entries_are_dropped() {
        let mut q = ReadyQueue::default();
        q.push("a", e(1, 1));
        q.push("a", e(1, 2));
        let slots = BTreeMap::from([("a".to_string(), 5)]);
        let got = q.take(&slots, |x| x.seq != 1);
        assert_eq!(got.len(), 1);
        assert!(q.is_empty());
    }
}
