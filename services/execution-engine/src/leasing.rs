//! The lease requests in flight (one per queue-manager) and whether the free slots call for
//! a new one.
//!
//! A request names the free slots per method (each provider's capacity × its depth
//! (`pace.rs`, at most the prefetch) − what it has in flight, summed over the providers
//! serving the method); a new request supersedes it only when some method has free slots
//! it did not ask for, or more than twice as many
//! ([`Asked::suffices`]). Working that out means
//! summing every provider's free slots over all its methods (the python-provider alone
//! serves dozens: its built-in functions), and the engine asks after every message. So a
//! request also keeps each provider's free slots at the time it was made: while no provider
//! has more free now and the provider table did not change, no method can have more free
//! slots than asked, and nothing is summed (it was 15 % of the engine's CPU in a 30,000-task
//! run).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::Provider;

/// Free slots by method. Methods are shared names (`Arc<str>`): a request names every
/// method of every provider (~80 with the python-provider's built-in functions), and is
/// made, compared and written without copying those names.
pub(crate) type Slots = BTreeMap<Arc<str>, u32>;

/// A `lease_tasks` payload ([`gleitzeit_protocol::payloads::LeaseTasks`] as JSON), written
/// from the shared method names.
#[derive(serde::Serialize)]
pub(crate) struct LeaseRequest<'a> {
    /// Method → free slots.
    #[serde(serialize_with = "names_to_counts")]
    pub(crate) slots: &'a Slots,
    /// How long to hold the request when nothing is ready.
    pub(crate) wait_ms: u64,
    /// Every method this engine serves, when it is news (`served.rs`).
    #[serde(serialize_with = "names")]
    pub(crate) served: &'a [Arc<str>],
}

fn names_to_counts<S: serde::Serializer>(slots: &&Slots, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(slots.iter().map(|(m, n)| (&**m, n)))
}

fn names<S: serde::Serializer>(names: &&[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(names.iter().map(|m| &**m))
}

/// A lease request in flight.
pub(crate) struct Asked {
    /// Its number (a later request supersedes it).
    pub(crate) seq: u64,
    /// The free slots it asked for, by method.
    slots: Slots,
    /// Each provider's free slots when it was made.
    free: HashMap<String, u32>,
    /// The provider table's version then.
    providers: u64,
}

impl Asked {
    /// A request for `slots`, made with `providers` (at `version`) as they are now.
    pub(crate) fn new(
        seq: u64,
        slots: Slots,
        providers: &HashMap<String, Provider>,
        prefetch: u32,
        version: u64,
    ) -> Self {
        let mut asked = Asked {
            seq,
            slots,
            free: HashMap::new(),
            providers: version,
        };
        asked.rebase(providers, prefetch, version);
        asked
    }

    /// Whether it still suffices without summing the free slots: the provider table is the
    /// same and no provider has more free slots than when it was made (or last rebased).
    pub(crate) fn still_covers(
        &self,
        providers: &HashMap<String, Provider>,
        prefetch: u32,
        version: u64,
    ) -> bool {
        self.providers == version
            && providers.iter().all(|(id, p)| {
                self.free
                    .get(id)
                    .is_some_and(|&then| free(p, prefetch) <= then)
            })
    }

    /// Whether it asked for at least `slots` of every method.
    #[cfg(test)]
    pub(crate) fn covers(&self, slots: &Slots) -> bool {
        slots
            .iter()
            .all(|(m, n)| self.slots.get(m).is_some_and(|a| a >= n))
    }

    /// Whether it asks for enough of `slots` not to be superseded: for every method with
    /// free slots, at least one and at least half of them. A slot freed by one outcome (a
    /// chain's next task) does not supersede a request for 31 of 32: superseding costs a new
    /// request and an empty answer to the old one, two relayed messages on every hop of a
    /// chain, and the old request brings as many tasks as are ready anyway, up to what it
    /// asked for.
    pub(crate) fn suffices(&self, slots: &Slots) -> bool {
        slots.iter().all(|(m, &n)| {
            n == 0
                || self
                    .slots
                    .get(m)
                    .is_some_and(|&a| a > 0 && a.saturating_mul(2) >= n)
        })
    }

    /// Takes the providers as they are now as the ones it was made with, once it is known to
    /// suffice for them ([`Asked::suffices`]): while no provider has more free slots than now
    /// and the table stays the same, it still suffices ([`Asked::still_covers`] says so
    /// without summing).
    pub(crate) fn rebase(
        &mut self,
        providers: &HashMap<String, Provider>,
        prefetch: u32,
        version: u64,
    ) {
        self.free = providers
            .iter()
            .map(|(id, p)| (id.clone(), free(p, prefetch)))
            .collect();
        self.providers = version;
    }
}

/// A provider's free slots: capacity × its depth (`pace.rs`, at most `prefetch`) − in
/// flight.
fn free(p: &Provider, prefetch: u32) -> u32 {
    p.room(prefetch).saturating_sub(p.in_flight)
}

/// The free slots per method, summed over the providers serving it.
pub(crate) fn free_slots(providers: &HashMap<String, Provider>, prefetch: u32) -> Slots {
    let mut slots = BTreeMap::new();
    for p in providers.values() {
        let free = free(p, prefetch);
        for m in &p.methods {
            *slots.entry(m.clone()).or_insert(0) += free;
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pace::Pace;

    fn providers(list: &[(&str, &[&str], u32, u32)]) -> HashMap<String, Provider> {
        list.iter()
            .map(|(id, methods, capacity, in_flight)| {
                let mut p = Provider {
                    methods: methods.iter().map(|m| Arc::from(*m)).collect(),
                    capacity: *capacity,
                    in_flight: *in_flight,
                    pace: Pace::default(),
                };
                // Tasks of a second: the depth is 2, whatever the prefetch above it.
                p.pace.record(1_000);
                (id.to_string(), p)
            })
            .collect()
    }

    #[test]
    fn a_request_covers_the_free_slots_until_a_provider_has_more_or_the_table_changes() {
        let mut table = providers(&[
            ("py", &["python/execute", "python/function"], 2, 3),
            ("llm", &["llm/chat"], 4, 0),
        ]);
        let slots = free_slots(&table, 2);
        assert_eq!(slots["python/execute"], 1);
        assert_eq!(slots["llm/chat"], 8);
        let asked = Asked::new(7, slots.clone(), &table, 2, 1);
        assert!(asked.still_covers(&table, 2, 1) && asked.covers(&slots));

        // Fewer free slots: still covered, without summing.
        table.get_mut("llm").expect("llm").in_flight = 5;
        assert!(asked.still_covers(&table, 2, 1));
        assert!(asked.covers(&free_slots(&table, 2)));

        // A provider freed a slot: the quick answer is no, and so is the full one.
        table.get_mut("py").expect("py").in_flight = 1;
        assert!(!asked.still_covers(&table, 2, 1));
        assert!(!asked.covers(&free_slots(&table, 2)));

        // The same free slots, but the provider table changed: not known without summing.
        table.get_mut("py").expect("py").in_flight = 3;
        assert!(!asked.still_covers(&table, 2, 2));
        assert!(asked.covers(&free_slots(&table, 2)));

        // A provider that was not there when it was asked.
        table.extend(providers(&[("py-2", &["python/execute"], 2, 0)]));
        assert!(!asked.still_covers(&table, 2, 1));
        assert!(!asked.covers(&free_slots(&table, 2)));
    }
    #[test]
    fn a_request_suffices_until_a_method_has_free_slots_it_did_not_ask_for_or_twice_as_many() {
        let mut table = providers(&[
            ("py", &["python/execute"], 2, 1),
            ("llm", &["llm/chat"], 4, 8),
        ]);
        // Asked for 3 of python/execute, none of llm/chat (all busy).
        let mut asked = Asked::new(1, free_slots(&table, 2), &table, 2, 1);
        assert!(asked.suffices(&free_slots(&table, 2)));

        // The chain's task came back: 4 free, 3 asked. Still enough, and known without
        // summing once rebased.
        table.get_mut("py").expect("py").in_flight = 0;
        assert!(!asked.still_covers(&table, 2, 1));
        assert!(asked.suffices(&free_slots(&table, 2)));
        asked.rebase(&table, 2, 1);
        assert!(asked.still_covers(&table, 2, 1));

        // A method it asked none of has a free slot: superseded.
        table.get_mut("llm").expect("llm").in_flight = 7;
        assert!(!asked.still_covers(&table, 2, 1));
        assert!(!asked.suffices(&free_slots(&table, 2)));

        // More than twice what it asked for: superseded.
        let table = providers(&[("py", &["python/execute"], 4, 7)]);
        let asked = Asked::new(2, free_slots(&table, 2), &table, 2, 1);
        let more = providers(&[("py", &["python/execute"], 4, 5)]);
        assert!(!asked.suffices(&free_slots(&more, 2)));
        let some_more = providers(&[("py", &["python/execute"], 4, 6)]);
        assert!(asked.suffices(&free_slots(&some_more, 2)));
    }

    #[test]
    fn a_request_is_written_as_a_lease_tasks_payload() {
        let slots: Slots = [(Arc::from("python/execute"), 3), (Arc::from("llm/chat"), 8)]
            .into_iter()
            .collect();
        let served = [Arc::from("llm/chat"), Arc::from("python/execute")];
        let text = serde_json::to_string(&LeaseRequest {
            slots: &slots,
            wait_ms: 1000,
            served: &served,
        })
        .expect("json");
        let read: gleitzeit_protocol::payloads::LeaseTasks =
            serde_json::from_str(&text).expect("a LeaseTasks");
        assert_eq!(read.slots["python/execute"], 3);
        assert_eq!(read.slots["llm/chat"], 8);
        assert_eq!(read.served, ["llm/chat", "python/execute"]);
        assert_eq!(read.wait_ms, 1000);
    }
}
