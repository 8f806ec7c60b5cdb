//! The component registry: who is connected, what they serve, how loaded they are, and
//! which instance gets the next message for a type or capability.
//!
//! Components connected to this hub are *local* (reached through their socket); with a hub
//! mesh, components of other hubs are *remote* (reached through the hub they are on) and
//! known from those hubs' snapshots. Local entries win when an id appears in both.
//!
//! Pure data structure (no sockets), so routing decisions are unit-tested directly.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::events::component_types;
use gleitzeit_protocol::payloads::{
    ComponentHealth, ComponentInfo, HeartbeatPayload, RegisterPayload, RoomsWatched,
};

use crate::watched::Watched;

/// How long a routed request counts as in flight when no reply comes back.
const IN_FLIGHT_EXPIRY: Duration = Duration::from_secs(120);

/// One registered component.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Public view.
    pub info: ComponentInfo,
    /// Its Socket.IO socket id.
    pub sid: String,
    /// The user whose key registered it (empty when authentication is off).
    pub user: String,
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

/// Where a component is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// On this hub, through this socket id.
    Local(String),
    /// On another hub of the mesh, by that hub's id.
    Remote(String),
}

/// The components of another hub, as its last snapshot listed them.
#[derive(Debug)]
struct RemoteHub {
    seen: Instant,
    components: HashMap<String, ComponentInfo>,
    rooms: HashSet<String>,
}

/// All registered components.
#[derive(Debug, Default)]
pub struct Registry {
    hub_id: String,
    components: HashMap<String, Entry>,
    by_sid: HashMap<String, String>,
    cursors: HashMap<String, usize>,
    routed: HashMap<String, (String, Instant)>,
    remote: HashMap<String, RemoteHub>,
    remote_in_flight: HashMap<String, u32>,
    /// Rooms with members on this hub: room -> socket ids.
    rooms: HashMap<String, HashSet<String>>,
    /// What this hub's queue-managers know of the watched rooms.
    watched: Watched,
}

impl Registry {
    /// An empty registry of the hub `hub_id`.
    pub fn new(hub_id: &str) -> Registry {
        Registry {
            hub_id: hub_id.to_string(),
            ..Registry::default()
        }
    }

    /// Registers (or replaces) a component. Returns the entry it replaced, if any.
    pub fn register(&mut self, reg: RegisterPayload, sid: &str) -> Option<Entry> {
        self.register_by(reg, sid, "")
    }

    /// Registers (or replaces) a component on behalf of `user`.
    pub fn register_by(&mut self, reg: RegisterPayload, sid: &str, user: &str) -> Option<Entry> {
        let id = reg.component_id.clone();
        let now = now_millis();
        let info = ComponentInfo {
            health: ComponentHealth::Healthy,
            in_flight: 0,
            connected_at: now,
            last_heartbeat: now,
            hub_id: None,
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
                user: user.to_string(),
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

    /// The entry of the component registered on socket `sid`, if any (a copy).
    pub fn info_of_sid(&self, sid: &str) -> Option<ComponentInfo> {
        let id = self.by_sid.get(sid)?;
        self.components.get(id).map(|e| e.info.clone())
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

    /// The user who registered a local component.
    pub fn owner_of(&self, component_id: &str) -> Option<&str> {
        self.components.get(component_id).map(|e| e.user.as_str())
    }

    /// The socket of a local component id.
    pub fn sid_of(&self, component_id: &str) -> Option<&str> {
        self.components.get(component_id).map(|e| e.sid.as_str())
    }

    /// Where a component id is reached: its local socket, else the hub that last listed it.
    pub fn locate(&self, component_id: &str) -> Option<Location> {
        if let Some(e) = self.components.get(component_id) {
            return Some(Location::Local(e.sid.clone()));
        }
        self.remote
            .iter()
            .filter(|(_, r)| r.components.contains_key(component_id))
            .max_by_key(|(_, r)| r.seen)
            .map(|(hub, _)| Location::Remote(hub.clone()))
    }

    /// Chooses one healthy instance matching `pred`, local or remote: lowest load relative
    /// to capacity, ties taken in turn (round robin per `key`). Marks the message `msg_id`
    /// as in flight to it.
    pub fn choose(
        &mut self,
        key: &str,
        msg_id: &str,
        pred: impl Fn(&RegisterPayload) -> bool,
    ) -> Option<(String, Location)> {
        let candidates = self.candidates(pred);
        let best = candidates.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
        let tied: Vec<(String, Location)> = candidates
            .into_iter()
            .filter(|c| c.1 <= best + f64::EPSILON)
            .map(|c| (c.0, c.2))
            .collect();
        if tied.is_empty() {
            return None;
        }
        let cursor = self.cursors.entry(key.to_string()).or_insert(0);
        let chosen = tied[*cursor % tied.len()].clone();
        *cursor = cursor.wrapping_add(1);
        self.mark_in_flight(&chosen.0, msg_id);
        Some(chosen)
    }

    /// Chooses the instance matching `pred` for a part of the big message `part.of`: the
    /// same one for every part (picked by the message id among the healthy instances, in id
    /// order, not by load), so the parts meet at one receiver. The message counts as in
    /// flight to it from its last part.
    pub fn choose_for_part(
        &mut self,
        part: &gleitzeit_protocol::envelope::Part,
        pred: impl Fn(&RegisterPayload) -> bool,
    ) -> Option<(String, Location)> {
        use std::hash::{Hash, Hasher};
        let candidates = self.candidates(pred);
        if candidates.is_empty() {
            return None;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        part.of.hash(&mut hasher);
        let at = (hasher.finish() % candidates.len() as u64) as usize;
        let (id, _, loc) = candidates.into_iter().nth(at)?;
        if part.index.saturating_add(1) == part.count {
            self.mark_in_flight(&id, &part.of);
        }
        Some((id, loc))
    }

    /// The healthy instances matching `pred`, local or remote, in id order, with their load
    /// relative to capacity.
    fn candidates(&self, pred: impl Fn(&RegisterPayload) -> bool) -> Vec<(String, f64, Location)> {
        let mut candidates: Vec<(String, f64, Location)> = Vec::new();
        let score = |info: &ComponentInfo, in_flight: u32| {
            let busy = in_flight.max(info.registration.load) as f64;
            busy / f64::from(info.registration.capacity.max(1))
        };
        for (id, e) in &self.components {
            if e.info.health == ComponentHealth::Healthy && pred(&e.info.registration) {
                let s = score(&e.info, e.info.in_flight);
                candidates.push((id.clone(), s, Location::Local(e.sid.clone())));
            }
        }
        for (hub, r) in &self.remote {
            for (id, info) in &r.components {
                if self.components.contains_key(id)
                    || info.health != ComponentHealth::Healthy
                    || !pred(&info.registration)
                {
                    continue;
                }
                let mine = self.remote_in_flight.get(id).copied().unwrap_or(0);
                let s = score(info, mine.max(info.in_flight));
                candidates.push((id.clone(), s, Location::Remote(hub.clone())));
            }
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0));
        candidates.dedup_by(|a, b| a.0 == b.0);
        candidates
    }

    /// Message `msg_id` is in flight to component `id` (until its reply comes back).
    fn mark_in_flight(&mut self, id: &str, msg_id: &str) {
        match self.components.get_mut(id) {
            Some(entry) => entry.info.in_flight += 1,
            None => *self.remote_in_flight.entry(id.to_string()).or_insert(0) += 1,
        }
        self.routed
            .insert(msg_id.to_string(), (id.to_string(), Instant::now()));
    }

    /// A reply to `request_id` came back: the request is no longer in flight.
    pub fn answered(&mut self, request_id: &str) {
        if let Some((id, _)) = self.routed.remove(request_id) {
            if let Some(e) = self.components.get_mut(&id) {
                e.info.in_flight = e.info.in_flight.saturating_sub(1);
            } else if let Some(n) = self.remote_in_flight.get_mut(&id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.remote_in_flight.remove(&id);
                }
            }
        }
    }

    /// Socket `sid` joined `rooms`. True when a room had no member here before.
    pub fn join_rooms(&mut self, sid: &str, rooms: &[String]) -> bool {
        let mut new = false;
        for r in rooms {
            let members = self.rooms.entry(r.clone()).or_default();
            if members.is_empty() {
                new = true;
                self.watched.touch(r);
            }
            members.insert(sid.to_string());
        }
        new
    }

    /// Socket `sid` left `rooms` (all of its rooms when `None`). True when a room lost its
    /// last member here.
    pub fn leave_rooms(&mut self, sid: &str, rooms: Option<&[String]>) -> bool {
        let names: Vec<String> = match rooms {
            Some(r) => r.to_vec(),
            None => self
                .rooms
                .iter()
                .filter(|(_, m)| m.contains(sid))
                .map(|(r, _)| r.clone())
                .collect(),
        };
        let mut emptied = false;
        for r in names {
            if let Some(members) = self.rooms.get_mut(&r) {
                members.remove(sid);
                if members.is_empty() {
                    self.rooms.remove(&r);
                    self.watched.touch(&r);
                    emptied = true;
                }
            }
        }
        emptied
    }

    /// Rooms with members on this hub, sorted.
    pub fn local_rooms(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rooms.keys().cloned().collect();
        v.sort();
        v
    }

    /// Event rooms that gained their first watcher or lost their last one in the mesh since
    /// the last call (what this hub's queue-managers are told next), if any: a room is
    /// watched while it has a member here or, by its last snapshot, on another hub.
    pub fn watch_changes(&mut self) -> Option<RoomsWatched> {
        let (rooms, remote) = (&self.rooms, &self.remote);
        self.watched.changes(|room| {
            rooms.contains_key(room) || remote.values().any(|r| r.rooms.contains(room))
        })
    }

    /// Every watched event room as told so far, for a queue-manager that just registered
    /// (tell the others [`Registry::watch_changes`] first).
    pub fn all_watched(&self) -> RoomsWatched {
        self.watched.all()
    }

    /// Socket ids of the queue-managers connected to this hub.
    pub fn local_queue_managers(&self) -> Vec<String> {
        self.components
            .values()
            .filter(|e| e.info.registration.component_type == component_types::QUEUE_MANAGER)
            .map(|e| e.sid.clone())
            .collect()
    }

    /// Other hubs with members in any of `rooms`.
    pub fn hubs_watching(&self, rooms: &[String]) -> Vec<String> {
        self.remote
            .iter()
            .filter(|(_, r)| rooms.iter().any(|room| r.rooms.contains(room)))
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Replaces what is known of hub `hub`'s components and rooms with its latest snapshot.
    pub fn update_remote(&mut self, hub: &str, components: Vec<ComponentInfo>, rooms: Vec<String>) {
        let rooms: HashSet<String> = rooms.into_iter().collect();
        match self.remote.get(hub) {
            Some(old) => {
                for r in old.rooms.symmetric_difference(&rooms) {
                    self.watched.touch(r);
                }
            }
            None => rooms.iter().for_each(|r| self.watched.touch(r)),
        }
        let components = components
            .into_iter()
            .map(|mut c| {
                c.hub_id = Some(hub.to_string());
                (c.registration.component_id.clone(), c)
            })
            .collect();
        self.remote.insert(
            hub.to_string(),
            RemoteHub {
                seen: Instant::now(),
                components,
                rooms,
            },
        );
    }

    /// Forgets hub `hub` (it said goodbye or went silent). Returns its components that are
    /// not connected here now: they are gone for this hub's sockets.
    pub fn drop_remote(&mut self, hub: &str) -> Vec<ComponentInfo> {
        let Some(r) = self.remote.remove(hub) else {
            return Vec::new();
        };
        r.rooms.iter().for_each(|room| self.watched.touch(room));
        r.components
            .into_values()
            .filter(|c| {
                let id = &c.registration.component_id;
                self.remote_in_flight.remove(id);
                !self.components.contains_key(id)
                    && !self.remote.values().any(|o| o.components.contains_key(id))
            })
            .collect()
    }

    /// Hubs not heard from within `timeout`.
    pub fn silent_hubs(&self, timeout: Duration) -> Vec<String> {
        self.remote
            .iter()
            .filter(|(_, r)| r.seen.elapsed() >= timeout)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Other hubs currently known, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.remote.keys().cloned().collect();
        v.sort();
        v
    }

    /// True when another hub is known (messages must be relayed).
    pub fn has_peers(&self) -> bool {
        !self.remote.is_empty()
    }

    /// The components connected to this hub (what a snapshot carries).
    pub fn local_list(&self) -> Vec<ComponentInfo> {
        self.components.values().map(|e| e.info.clone()).collect()
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

    /// The public table of the whole mesh (this hub's components and every other hub's),
    /// sorted by type then id.
    pub fn list(&self) -> Vec<ComponentInfo> {
        let own = (!self.hub_id.is_empty()).then(|| self.hub_id.clone());
        let mut v: Vec<ComponentInfo> = self
            .components
            .values()
            .map(|e| {
                let mut info = e.info.clone();
                info.hub_id = own.clone();
                info
            })
            .collect();
        for r in self.remote.values() {
            for (id, info) in &r.components {
                if !self.components.contains_key(id)
                    && !v.iter().any(|c| &c.registration.component_id == id)
                {
                    v.push(info.clone());
                }
            }
        }
        v.sort_by(|a, b| {
            (&a.registration.component_type, &a.registration.component_id)
                .cmp(&(&b.registration.component_type, &b.registration.component_id))
        });
        v
    }

    /// Number of components registered on this hub.
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
    fn every_part_of_a_big_message_goes_to_one_instance_whatever_the_load() {
        let mut r = Registry::default();
        for i in 0..4 {
            r.register(
                reg(&format!("q{i}"), "queue-manager", &[], 1),
                &format!("s{i}"),
            );
        }
        let mut spread = std::collections::HashSet::new();
        for m in 0..20 {
            let of = format!("msg-{m}");
            let mut picked = std::collections::HashSet::new();
            for index in 0..5 {
                let part = gleitzeit_protocol::envelope::Part {
                    of: of.clone(),
                    index,
                    count: 5,
                };
                // Load changes between parts (other messages) do not move them.
                r.choose("type:queue-manager", &format!("other-{m}-{index}"), |_| {
                    true
                });
                let (id, _) = r.choose_for_part(&part, |_| true).expect("a target");
                picked.insert(id);
            }
            assert_eq!(picked.len(), 1, "{of}: {picked:?}");
            spread.extend(picked);
            // The whole message is in flight once, answered by its id.
            assert!(r.routed.contains_key(&of));
            r.answered(&of);
        }
        assert!(
            spread.len() > 1,
            "different messages spread over the instances"
        );
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
    fn remote_components_are_chosen_and_local_ones_win_a_shared_id() {
        let mut r = Registry::new("hub-a");
        r.register(reg("local", "p", &[], 1), "s1");
        let remote = |id: &str| ComponentInfo {
            registration: reg(id, "p", &[], 1),
            health: ComponentHealth::Healthy,
            in_flight: 0,
            connected_at: 0,
            last_heartbeat: 0,
            hub_id: None,
        };
        r.update_remote(
            "hub-b",
            vec![remote("far"), remote("local")],
            vec!["workflow:x".into()],
        );
        assert_eq!(r.hubs_watching(&["workflow:x".into()]), vec!["hub-b"]);
        assert!(r.hubs_watching(&["workflow:y".into()]).is_empty());
        assert!(r.join_rooms("s9", &["events".into()]));
        assert!(!r.join_rooms("s8", &["events".into()]));
        assert!(!r.leave_rooms("s9", None));
        assert!(r.leave_rooms("s8", Some(&["events".into()])));
        assert!(r.local_rooms().is_empty());
        assert_eq!(r.locate("far"), Some(Location::Remote("hub-b".into())));
        assert_eq!(r.locate("local"), Some(Location::Local("s1".into())));
        let picks: Vec<(String, Location)> = (0..2)
            .map(|n| {
                r.choose("type:p", &format!("m{n}"), |_| true)
                    .expect("pick")
            })
            .collect();
        assert!(picks.contains(&("far".into(), Location::Remote("hub-b".into()))));
        assert!(picks.contains(&("local".into(), Location::Local("s1".into()))));
        let list = r.list();
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(list
            .iter()
            .any(|c| c.registration.component_id == "far" && c.hub_id.as_deref() == Some("hub-b")));
        assert_eq!(r.peers(), vec!["hub-b".to_string()]);
        // The remote hub goes away: only its own component is gone for this hub.
        let gone = r.drop_remote("hub-b");
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].registration.component_id, "far");
        assert!(!r.has_peers());
        assert_eq!(r.locate("far"), None);
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
