//! Several hubs as one: routes, rooms and the component registry relayed over Redis
//! pub/sub.
//!
//! Each hub of a mesh subscribes to two channels: `gz:mesh:all` (every hub) and
//! `gz:mesh:hub:<its id>` (messages for components connected to it). Four kinds of message
//! travel between hubs, as JSON:
//!
//! - `snapshot`: the components connected to the sending hub and the rooms that have
//!   members there, sent every interval and at once when either changes. A hub silent for
//!   the heartbeat timeout is forgotten, and its components are announced as left
//!   (`hub_lost`) to local sockets.
//! - `deliver`: one envelope for a component (or unregistered socket) on another hub.
//! - `room`: one envelope for room members of other hubs; sent only to hubs whose last
//!   snapshot listed one of its rooms, so events nobody watches there stay local.
//! - `bye`: the sending hub is shutting down; forget its components now.
//!
//! Pub/sub delivers at most once. The protocol above already tolerates a lost message
//! (held-task reports, retried requests, event catch-up by sequence number), so a relay
//! lost while Redis restarts costs time, not work. Redis I/O runs on two plain threads
//! with the synchronous client; the async runtime only sees parsed messages.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::errors::ErrorCode;
use gleitzeit_protocol::payloads::{ComponentInfo, MeshStatus};
use gleitzeit_protocol::RawEnvelope;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Channel every hub of the mesh listens to.
pub(crate) const ALL_CHANNEL: &str = "gz:mesh:all";
/// Most messages sent to Redis in one pipelined round trip.
const BATCH: usize = 512;
/// Messages waiting for Redis before new ones are dropped.
const OUTBOX: usize = 100_000;

/// A random number for this process (from the clock and the pid; no cryptographic need).
fn rand_instance() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (u64::from(std::process::id()) << 32)).max(1)
}

/// Channel of one hub.
pub(crate) fn hub_channel(hub_id: &str) -> String {
    format!("gz:mesh:hub:{hub_id}")
}

/// What a message between hubs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Snapshot,
    Deliver,
    Room,
    Bye,
}

/// One message between hubs. A plain struct (not a tagged enum) so the envelope's payload
/// stays unparsed text on the way through.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MeshMessage {
    /// The sending hub.
    pub(crate) hub: String,
    /// A number drawn by the sending process at start: two live hubs with one id differ
    /// here, which is how such a misconfiguration is noticed.
    #[serde(default)]
    pub(crate) instance: u64,
    pub(crate) kind: Kind,
    /// `deliver`: the component id (or `sid:<socket>`) to deliver to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<String>,
    /// `room`: the rooms to emit to. `snapshot`: the rooms with members on the sender.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) rooms: Vec<String>,
    /// `snapshot`: the sending hub's components.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) components: Vec<ComponentInfo>,
    /// `deliver` and `room`: the envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) env: Option<RawEnvelope>,
}

struct Outgoing {
    channel: String,
    body: Vec<u8>,
    /// Told once the message went to Redis (or could not).
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// This hub's side of the mesh: a sender towards Redis and counters.
pub(crate) struct Mesh {
    hub_id: String,
    instance: u64,
    out: std_mpsc::SyncSender<Outgoing>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    relayed_out: AtomicU64,
    relayed_in: AtomicU64,
    dropped: AtomicU64,
    id_conflicts: AtomicU64,
}

impl Mesh {
    /// Starts the Redis threads. Messages from other hubs arrive on the returned receiver.
    pub(crate) fn start(
        redis_url: &str,
        hub_id: &str,
    ) -> Result<(Mesh, mpsc::Receiver<MeshMessage>), redis::RedisError> {
        let client = redis::Client::open(redis_url)?;
        let (out, out_rx) = std_mpsc::sync_channel(OUTBOX);
        let (in_tx, in_rx) = mpsc::channel(OUTBOX);
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let instance = rand_instance();
        {
            let (client, counters) = (client.clone(), counters.clone());
            std::thread::Builder::new()
                .name("mesh-publish".into())
                .spawn(move || publisher(client, out_rx, counters))
                .map_err(redis::RedisError::from)?;
        }
        {
            let (stop, counters) = (stop.clone(), counters.clone());
            let channels = [ALL_CHANNEL.to_string(), hub_channel(hub_id)];
            let own = (hub_id.to_string(), instance);
            std::thread::Builder::new()
                .name("mesh-subscribe".into())
                .spawn(move || subscriber(client, channels, own, in_tx, stop, counters))
                .map_err(redis::RedisError::from)?;
        }
        info!(hub_id, "hub mesh over Redis started");
        Ok((
            Mesh {
                hub_id: hub_id.to_string(),
                instance,
                out,
                stop,
                counters,
            },
            in_rx,
        ))
    }

    fn send(&self, channel: String, msg: &MeshMessage) {
        self.send_with(channel, msg, None);
    }

    fn send_with(
        &self,
        channel: String,
        msg: &MeshMessage,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let body = match serde_json::to_vec(msg) {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "could not encode a mesh message");
                return;
            }
        };
        let out = Outgoing {
            channel,
            body,
            done,
        };
        if self.out.try_send(out).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn message(&self, kind: Kind) -> MeshMessage {
        MeshMessage {
            hub: self.hub_id.clone(),
            instance: self.instance,
            kind,
            to: None,
            rooms: Vec::new(),
            components: Vec::new(),
            env: None,
        }
    }

    /// Sends this hub's components and occupied rooms to every other hub.
    pub(crate) fn snapshot(&self, components: Vec<ComponentInfo>, rooms: Vec<String>) {
        let mut msg = self.message(Kind::Snapshot);
        msg.components = components;
        msg.rooms = rooms;
        self.send(ALL_CHANNEL.into(), &msg);
    }

    /// Hands an envelope to hub `hub` (or to every hub when `None`, for a socket id whose
    /// hub is not known) for delivery to `to`.
    pub(crate) fn deliver(&self, hub: Option<&str>, to: &str, env: RawEnvelope) {
        let mut msg = self.message(Kind::Deliver);
        msg.to = Some(to.to_string());
        msg.env = Some(env);
        let channel = hub.map_or_else(|| ALL_CHANNEL.to_string(), hub_channel);
        self.send(channel, &msg);
    }

    /// Emits an envelope to room members on the hubs `hubs` (one message on the shared
    /// channel when several hubs want it).
    pub(crate) fn room(&self, hubs: &[String], rooms: Vec<String>, env: RawEnvelope) {
        let mut msg = self.message(Kind::Room);
        msg.rooms = rooms;
        msg.env = Some(env);
        match hubs {
            [] => {}
            [one] => self.send(hub_channel(one), &msg),
            _ => self.send(ALL_CHANNEL.into(), &msg),
        }
    }

    /// Tells the other hubs this one is leaving (waiting up to a second for Redis to take
    /// the message), then stops the subscription.
    pub(crate) async fn leave(&self) {
        let msg = self.message(Kind::Bye);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send_with(ALL_CHANNEL.into(), &msg, Some(tx));
        let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Counters and connection state for `/health`.
    pub(crate) fn status(&self, peers: Vec<String>) -> MeshStatus {
        let c = &self.counters;
        MeshStatus {
            redis_connected: c.publisher_up.load(Ordering::Relaxed)
                && c.subscriber_up.load(Ordering::Relaxed),
            peers,
            relayed_out: c.relayed_out.load(Ordering::Relaxed),
            relayed_in: c.relayed_in.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            id_conflicts: c.id_conflicts.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends queued messages to Redis, pipelining up to [`BATCH`] per round trip. Ends when
/// the hub drops its sender.
fn publisher(client: redis::Client, rx: std_mpsc::Receiver<Outgoing>, counters: Arc<Counters>) {
    let mut conn: Option<redis::Connection> = None;
    let mut warned = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            match client.get_connection_with_timeout(Duration::from_secs(2)) {
                Ok(c) => {
                    if warned {
                        info!("hub mesh: Redis reachable again");
                    }
                    warned = false;
                    counters.publisher_up.store(true, Ordering::Relaxed);
                    conn = Some(c);
                }
                Err(e) => {
                    if !warned {
                        warn!(code = ErrorCode::RedisUnavailable.as_str(), error = %e, "hub mesh: Redis unreachable; messages for other hubs are dropped until it is back");
                        warned = true;
                    }
                    counters.publisher_up.store(false, Ordering::Relaxed);
                    counters
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    drop(batch);
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            }
        }
        let mut pipe = redis::pipe();
        for m in &batch {
            pipe.cmd("PUBLISH").arg(&m.channel).arg(&m.body).ignore();
        }
        let sent = conn.as_mut().map(|c| pipe.query::<()>(c));
        match sent {
            Some(Ok(())) => {
                counters
                    .relayed_out
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Some(Err(e)) => {
                warn!(code = ErrorCode::RedisUnavailable.as_str(), error = %e, "hub mesh: publishing to Redis failed");
                counters.publisher_up.store(false, Ordering::Relaxed);
                counters
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                conn = None;
            }
            None => {}
        }
        for m in batch {
            if let Some(done) = m.done {
                let _ = done.send(());
            }
        }
    }
    debug!("hub mesh publisher stopped");
}

/// Receives messages of other hubs and hands them to the runtime, reconnecting with backoff.
fn subscriber(
    client: redis::Client,
    channels: [String; 2],
    own: (String, u64),
    tx: mpsc::Sender<MeshMessage>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) {
    let mut delay = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        match subscribe_once(&client, &channels, &own, &tx, &stop, &counters) {
            Ok(()) => break,
            Err(e) => {
                counters.subscriber_up.store(false, Ordering::Relaxed);
                debug!(error = %e, "hub mesh subscription lost; reconnecting");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    debug!("hub mesh subscriber stopped");
}

fn subscribe_once(
    client: &redis::Client,
    channels: &[String; 2],
    own: &(String, u64),
    tx: &mpsc::Sender<MeshMessage>,
    stop: &AtomicBool,
    counters: &Counters,
) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut pubsub = conn.as_pubsub();
    for c in channels {
        pubsub.subscribe(c)?;
    }
    pubsub.set_read_timeout(Some(Duration::from_millis(250)))?;
    counters.subscriber_up.store(true, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let msg = match pubsub.get_message() {
            Ok(m) => m,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let body: &[u8] = msg.get_payload_bytes();
        let parsed: MeshMessage = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "ignored a malformed mesh message");
                continue;
            }
        };
        if parsed.hub == own.0 {
            if parsed.instance != own.1 {
                let n = counters.id_conflicts.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(100) {
                    error!(hub_id = %own.0, "another live hub uses this hub's id: give every hub of a mesh its own --hub-id; routing between them is broken until then");
                }
            }
            continue;
        }
        counters.relayed_in.fetch_add(1, Ordering::Relaxed);
        if tx.blocking_send(parsed).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_crosses_hubs_with_its_payload_text_untouched() {
        let text = r#"{"v":1,"id":"m1","source":"qm-1","target":"component:ee-1","event":"reply","payload":{"ok":{"tasks":[1,2.50,"x"]}},"ts":5}"#;
        let env: RawEnvelope = serde_json::from_str(text).expect("envelope");
        let msg = MeshMessage {
            hub: "hub-a".into(),
            instance: 7,
            kind: Kind::Deliver,
            to: Some("ee-1".into()),
            rooms: Vec::new(),
            components: Vec::new(),
            env: Some(env),
        };
        let wire = serde_json::to_vec(&msg).expect("encode");
        let back: MeshMessage = serde_json::from_slice(&wire).expect("decode");
        assert_eq!(back.kind, Kind::Deliver);
        assert_eq!(back.to.as_deref(), Some("ee-1"));
        let env = back.env.expect("env");
        let payload = env.payload.expect("payload");
        // 2.50 stays 2.50: the payload is relayed as text, never re-encoded.
        assert_eq!(payload.get(), r#"{"ok":{"tasks":[1,2.50,"x"]}}"#);
    }

    #[test]
    fn a_snapshot_without_rooms_or_components_parses() {
        let back: MeshMessage =
            serde_json::from_str(r#"{"hub":"hub-b","kind":"snapshot"}"#).expect("decode");
        assert_eq!(back.kind, Kind::Snapshot);
        assert!(back.components.is_empty() && back.rooms.is_empty() && back.env.is_none());
        assert!(serde_json::from_str::<MeshMessage>(r#"{"hub":"x","kind":"nope"}"#).is_err());
    }
}
