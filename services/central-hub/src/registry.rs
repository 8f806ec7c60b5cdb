//! The component registry: who is connected, what they serve, how loaded they are, and
//! which instance gets the next message for a type or capability.
//!
//! Pure data structure (no sockets), so routing decisions are unit-tested directly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::payloads::{
    ComponentHealth, ComponentInfo, HeartbeatPayload, RegisterPayload,
};

/// How long a routed request counts as in flight when no reply comes back.
const IN_FLIGHT_EXPIRY: Duration = Duration::from_secs(120);

/// One registered component.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Public view.
    pub info: ComponentInfo,
    /// Its Socket.IO socket id.
    pub sid: String,
    last_seen: Instant,
}

/// What the reaper decided about one component.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Heartbeats are late: no longer routed to.
    Unhealthy(ComponentInfo),
    /// Heartbeats stopped for too long: removed.
    Expired(Entry),
}

/// All registered components.
#[derive(Debug, Default)]
pub struct Registry {
    components: HashMap<String, Entry>,
    by_sid: HashMap<String, String>,
    cursors: HashMap<String, usize>,
    routed: HashMap<String, (String, Instant)>,
}

impl Registry {
    /// Registers (or replaces) a component. Returns the entry it replaced, if any.
    pub fn register(&mut self, reg: RegisterPayload, sid: &str) -> Option<Entry> {
        let id = reg.component_id.clone();
        let now = now_millis();
        let info = ComponentInfo {
            health: ComponentHealth::Healthy,
            in_flight: 0,
            connected_at: now,
            last_heartbeat: now,
            registration: reg,
        };
        if let Some(old_id) = self.by_sid.insert(sid.to_string(), id.clone()) {
            if old_id != id {
                self.components.remove(&old_id);
            }
        }
        let old = self.components.insert(
            id,
            Entry {
                info,
                sid: sid.to_string(),
                last_seen: Instant::now(),
            },
        );
        match old {
            Some(old) if old.sid != sid => {
                self.by_sid.remove(&old.sid);
                Some(old)
            }
            _ => None,
        }
    }

    /// Records a heartbeat. Returns false when the socket is not registered.
    pub fn heartbeat(&mut self, sid: &str, hb: &HeartbeatPayload) -> bool {
        let Some(id) = self.by_sid.get(sid) else {
            return false;
        };
        let Some(entry) = self.components.get_mut(id) else {
            return false;
        };
        entry.last_seen = Instant::now();
        entry.info.last_heartbeat = now_millis();
        entry.info.health = ComponentHealth::Healthy;
        entry.info.registration.load = hb.load;
        if let Some(c) = hb.capacity {
            entry.info.registration.capacity = c;
        }
        if let Some(m) = &hb.metadata {
            entry.info.registration.metadata = m.clone();
        }
        true
    }

    /// Removes the component on a socket (disconnect or deregister).
    pub fn remove_sid(&mut self, sid: &str) -> Option<Entry> {
        let id = self.by_sid.remove(sid)?;
        self.components.remove(&id)
    }

    /// The component id registered on a socket.
    pub fn id_of_sid(&self, sid: &str) -> Option<&str> {
        self.by_sid.get(sid).map(String::as_str)
    }

    /// The socket of a component id.
    pub fn sid_of(&self, component_id: &str) -> Option<&str> {
        self.components.get(component_id).map(|e| e.sid.as_str())
    }

    /// Chooses one healthy instance matching `pred`: lowest load relative to capacity, ties
    /// taken in turn (round robin per `key`). Marks the message `msg_id` as in flight to it.
    pub fn choose(
        &mut self,
        key: &str,
        msg_id: &str,
        pred: impl Fn(&RegisterPayload) -> bool,
    ) -> Option<(String, String)> {
        let mut candidates: Vec<(&String, &Entry)> = self
            .components
            .iter()
            .filter(|(_, e)| {
                e.info.health == ComponentHealth::Healthy && pred(&e.info.registration)
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        candidates.sort_by(|a, b| a.0.cmp(b.0));
        let score = |e: &Entry| {
            let busy = e.info.in_flight.max(e.info.registration.load) as f64;
            busy / f64::from(e.info.registration.capacity.max(1))
        };
        let best = candidates
            .iter()
            .map(|(_, e)| score(e))
            .fold(f64::INFINITY, f64::min);
        let tied: Vec<&String> = candidates
            .iter()
            .filter(|(_, e)| score(e) <= best + f64::EPSILON)
            .map(|(id, _)| *id)
            .collect();
        let cursor = self.cursors.entry(key.to_string()).or_insert(0);
        let chosen = tied[*cursor % tied.len()].clone();
        *cursor = cursor.wrapping_add(1);
        let entry = self.components.get_mut(&chosen)?;
        entry.info.in_flight += 1;
        self.routed
            .insert(msg_id.to_string(), (chosen.clone(), Instant::now()));
        Some((chosen, entry.sid.clone()))
    }

    /// A reply to `request_id` came back: the request is no longer in flight.
    pub fn answered(&mut self, request_id: &str) {
        if let Some((id, _)) = self.routed.remove(request_id) {
            if let Some(e) = self.components.get_mut(&id) {
                e.info.in_flight = e.info.in_flight.saturating_sub(1);
            }
        }
    }

    /// Marks late components unhealthy and removes silent ones.
    pub fn reap(&mut self, unhealthy_after: Duration, expire_after: Duration) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        let mut expired = Vec::new();
        for (id, e) in self.components.iter_mut() {
            let silent = e.last_seen.elapsed();
            if silent >= expire_after {
                expired.push(id.clone());
            } else if silent >= unhealthy_after && e.info.health == ComponentHealth::Healthy {
                e.info.health = ComponentHealth::Unhealthy;
                verdicts.push(Verdict::Unhealthy(e.info.clone()));
            }
        }
        for id in expired {
            if let Some(e) = self.components.remove(&id) {
                self.by_sid.remove(&e.sid);
                verdicts.push(Verdict::Expired(e));
            }
        }
        let stale: Vec<String> = self
            .routed
            .iter()
            .filter(|(_, (_, at))| at.elapsed() > IN_FLIGHT_EXPIRY)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.answered(&k);
        }
        verdicts
    }

    /// The public table, sorted by type then id.
    pub fn list(&self) -> Vec<ComponentInfo> {
        let mut v: Vec<ComponentInfo> = self.components.values().map(|e| e.info.clone()).collect();
        v.sort_by(|a, b| {
            (&a.registration.component_type, &a.registration.component_id)
                .cmp(&(&b.registration.component_type, &b.registration.component_id))
        });
        v
    }

    /// Number of registered components.
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn reg(id: &str, ty: &str, caps: &[&str], capacity: u32) -> RegisterPayload {
        RegisterPayload {
            component_type: ty.into(),
            component_id: id.into(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            capacity,
            load: 0,
            version: "t".into(),
            host: "h".into(),
            pid: 1,
            metadata: Value::Null,
        }
    }

    #[test]
    fn ties_are_taken_in_turn() {
        let mut r = Registry::default();
        for i in 0..3 {
            r.register(
                reg(&format!("p{i}"), "python-provider", &[], 10),
                &format!("s{i}"),
            );
        }
        let mut counts = HashMap::new();
        for n in 0..30 {
            let (id, _) = r
                .choose("type:python-provider", &format!("m{n}"), |c| {
                    c.component_type == "python-provider"
                })
                .expect("a target");
            *counts.entry(id).or_insert(0) += 1;
            r.answered(&format!("m{n}"));
        }
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&c| c == 10), "{counts:?}");
    }

    #[test]
    fn least_loaded_relative_to_capacity_wins() {
        let mut r = Registry::default();
        r.register(reg("big", "p", &[], 10), "s1");
        r.register(reg("small", "p", &[], 1), "s2");
        let mut picks = Vec::new();
        for n in 0..6 {
            picks.push(
                r.choose("type:p", &format!("m{n}"), |_| true)
                    .expect("target")
                    .0,
            );
        }
        // After one request "small" is full (1/1); "big" takes the rest until 1.0 relative load.
        assert_eq!(
            picks.iter().filter(|p| *p == "small").count(),
            1,
            "{picks:?}"
        );
    }

    #[test]
    fn capability_filter_and_unhealthy_exclusion() {
        let mut r = Registry::default();
        r.register(reg("a", "ollama-provider", &["llm/chat"], 4), "s1");
        r.register(reg("b", "python-provider", &["python/execute"], 4), "s2");
        let pick = r.choose("capability:llm/chat", "m", |c| {
            c.capabilities.iter().any(|x| x == "llm/chat")
        });
        assert_eq!(pick.map(|p| p.0).as_deref(), Some("a"));
        let verdicts = r.reap(Duration::ZERO, Duration::from_secs(3600));
        assert_eq!(verdicts.len(), 2);
        assert!(r.choose("k", "m2", |_| true).is_none());
        let hb = HeartbeatPayload::default();
        assert!(r.heartbeat("s1", &hb));
        assert!(r.choose("k", "m3", |_| true).is_some());
    }

    #[test]
    fn re_registering_on_a_new_socket_replaces_the_old_one() {
        let mut r = Registry::default();
        r.register(reg("a", "t", &[], 1), "s1");
        let old = r.register(reg("a", "t", &[], 1), "s2");
        assert_eq!(old.map(|e| e.sid).as_deref(), Some("s1"));
        assert_eq!(r.len(), 1);
        assert!(r.remove_sid("s1").is_none());
        assert_eq!(r.sid_of("a"), Some("s2"));
    }

    #[test]
    fn silent_components_expire() {
        let mut r = Registry::default();
        r.register(reg("a", "t", &[], 1), "s1");
        let v = r.reap(Duration::ZERO, Duration::ZERO);
        assert!(
            matches!(v.as_slice(), [Verdict::Expired(e)] if e.info.registration.component_id == "a")
        );
        assert!(r.is_empty());
    }
}
