//! The connection task: one Socket.IO session at a time, rebuilt with backoff when lost.
//!
//! A session is up once the namespace is joined (the `open` event) and, for components, the
//! hub answered `register`. While it is up, the task drains the outbox and sends heartbeats;
//! it ends when the hub closes it, an emit fails, or heartbeats go unanswered. A message in
//! parts goes out one part at a time as the socket takes them (`parts.rs`); one cut short
//! by a lost connection goes on from where it stopped on the next one.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::limits::MESSAGE_PART_BYTES;
use gleitzeit_protocol::payloads::{HeartbeatPayload, RegisteredPayload, SubscribePayload};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::{events, Envelope, Reply, Target, SIO_ENVELOPE_EVENT};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::answer::{answer_of, Answer};
use crate::parts::Outbound;
use crate::transport::{self, ConnectError, Link};
use crate::{lock, ClientError, Shared};

/// How long to wait for the namespace to be joined and for the registration reply.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Heartbeats that may go unanswered before the session is considered dead.
const MAX_MISSED_HEARTBEATS: u32 = 3;

struct Session {
    link: Link,
    heartbeat_interval: Duration,
}

enum SessionError {
    /// Worth retrying (hub down, timeout, network).
    Transient(String),
    /// The hub refused us (bad registration or credentials): retrying will not help.
    Refused(GzError),
}

enum End {
    Stopped,
    Lost,
    /// The component's preferred hub answers again and the component is idle: move there.
    Rebalance,
}

/// How often a component away from its preferred hub checks whether it can move back.
const REBALANCE_CHECK: Duration = Duration::from_secs(2);
/// How long a probe of the preferred hub may take to open a session.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a component must have sent and received nothing but heartbeats (and have no
/// load) before it moves back to its preferred hub: nothing is in flight then.
const QUIET_FOR: Duration = Duration::from_secs(2);

/// The index of the hub a component prefers among `hubs` listed: FNV-1a of its id, so
/// every process (and every restart) picks the same one and components spread evenly.
pub fn preferred_index(component_id: &str, hubs: usize) -> usize {
    if hubs <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in component_id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % hubs as u64) as usize
}

/// Runs sessions until the client is closed. Reports the first session's outcome on `first`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut outbox: mpsc::Receiver<Outbound>,
    first: oneshot::Sender<Result<(), ClientError>>,
) {
    let mut first = Some(first);
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut carry: Option<Outbound> = None;
    let mut stop = shared.stop.subscribe();
    // Several hubs of one mesh may be listed, comma-separated: a lost or failed session
    // moves on to the next.
    let urls = hub_urls(&shared.config.url);
    // Components spread over the hubs of a mesh (each starts at, and returns to, the hub
    // its id hashes to); plain clients start at the first, which the caller ordered.
    let preferred = match &shared.config.registration {
        Some(reg) => preferred_index(&reg.component_id, urls.len()),
        None => 0,
    };
    let (mut idx, mut failed_in_round) = (preferred, 0usize);
    loop {
        if *stop.borrow() {
            break;
        }
        let url = urls[idx].as_str();
        match open_session(&shared, url).await {
            Ok(session) => {
                delay = Duration::from_millis(100);
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                info!(hub = %url, id = %shared.id, "connected to hub");
                failed_in_round = 0;
                shared.connected.send_replace(true);
                let home = (shared.config.registration.is_some() && idx != preferred)
                    .then(|| urls[preferred].as_str());
                let end = drive(&shared, &session, &mut outbox, &mut carry, &mut stop, home).await;
                shared.connected.send_replace(false);
                session.link.close();
                match end {
                    End::Stopped => break,
                    End::Rebalance => {
                        info!(from = %url, to = %urls[preferred], id = %shared.id, "preferred hub is back; moving to it while idle");
                        idx = preferred;
                        continue;
                    }
                    End::Lost => {}
                }
                warn!(hub = %url, "connection to hub lost; reconnecting");
                if shared.config.registration.is_none() {
                    // A plain client's reply address is its socket id, which the next session
                    // changes: replies to requests sent on this one can never arrive (nor can
                    // the rest of a message in parts be joined with its first parts).
                    fail_pending(&shared);
                    if matches!(carry, Some(Outbound::Parts(_))) {
                        carry = None;
                    }
                }
                if urls.len() > 1 {
                    // Another hub of the mesh is tried at once.
                    idx = (idx + 1) % urls.len();
                    continue;
                }
            }
            Err(SessionError::Refused(e)) => {
                warn!(error = %e, "hub refused this client");
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(ClientError::Registration(e)));
                    return;
                }
            }
            Err(SessionError::Transient(reason)) => {
                debug!(hub = %url, %reason, "hub connection attempt failed");
                idx = (idx + 1) % urls.len();
                failed_in_round += 1;
                if failed_in_round < urls.len() {
                    // The other hubs of the list are tried at once; back off once all failed.
                    continue;
                }
                failed_in_round = 0;
                if let (Some(limit), Some(_)) = (shared.config.initial_connect_timeout, &first) {
                    if started.elapsed() >= limit {
                        if let Some(tx) = first.take() {
                            let _ = tx.send(Err(ClientError::Unreachable {
                                url: shared.config.url.clone(),
                                reason,
                            }));
                        }
                        return;
                    }
                }
            }
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % 100);
        tokio::select! {
            _ = tokio::time::sleep(delay + jitter) => {}
            _ = stop.changed() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    if let Some(tx) = first.take() {
        let _ = tx.send(Err(ClientError::Closed));
    }
}

/// Fails every request waiting for a reply with a retryable GZ1031.
fn fail_pending(shared: &Shared) {
    let waiting: Vec<_> = lock(&shared.pending).drain().collect();
    for (_, tx) in waiting {
        let _ = tx.send(Answer::Made(Reply::Err {
            error: GzError::new(
                ErrorCode::Disconnected,
                "the connection to the hub was lost before the reply came",
            ),
        }));
    }
}

/// The hub URLs of a comma-separated list (at least one entry).
pub(crate) fn hub_urls(list: &str) -> Vec<String> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if urls.is_empty() {
        vec![list.to_string()]
    } else {
        urls
    }
}

async fn open_session(shared: &Arc<Shared>, url: &str) -> Result<Session, SessionError> {
    let dispatch_to = shared.clone();
    let link = transport::connect(
        url,
        shared.config.auth.as_ref(),
        OPEN_TIMEOUT,
        move |body| dispatch(&dispatch_to, body),
    )
    .await
    .map_err(|e| match e {
        ConnectError::Transient(reason) => SessionError::Transient(reason),
        ConnectError::Refused(reason) => SessionError::Refused(refusal(&reason)),
        ConnectError::Setup(error) => SessionError::Refused(error),
    })?;

    let mut heartbeat_interval = shared.config.heartbeat_interval;
    if let Some(reg) = &shared.config.registration {
        let mut reg = reg.clone();
        reg.load = shared.load.load(Ordering::Relaxed);
        reg.capacity = shared.capacity.load(Ordering::Relaxed);
        let payload = serde_json::to_value(&reg).unwrap_or(Value::Null);
        let mut env = Envelope::new(Target::Hub, events::REGISTER, payload);
        env.source = shared.id.clone();
        let reply = match request_direct(shared, &link, env, OPEN_TIMEOUT).await {
            Ok(r) => r,
            Err(reason) => {
                link.close();
                return Err(SessionError::Transient(reason));
            }
        };
        match reply.into_result() {
            Ok(v) => {
                if let Ok(r) = serde_json::from_value::<RegisteredPayload>(v) {
                    heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms.max(50));
                }
            }
            Err(e) => {
                link.close();
                return Err(SessionError::Refused(e));
            }
        }
    }

    let rooms = lock(&shared.rooms).clone();
    if !rooms.is_empty() {
        let payload = serde_json::to_value(SubscribePayload { rooms }).unwrap_or(Value::Null);
        let mut env = Envelope::new(Target::Hub, events::SUBSCRIBE, payload);
        env.source = shared.id.clone();
        if let Err(e) = emit(&link, &env) {
            link.close();
            return Err(SessionError::Transient(e));
        }
    }
    Ok(Session {
        link,
        heartbeat_interval,
    })
}

/// Sends a request on this session's client directly (not through the outbox) and waits.
async fn request_direct(
    shared: &Arc<Shared>,
    link: &Link,
    env: Envelope,
    timeout: Duration,
) -> Result<Reply, String> {
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(env.id.clone(), tx);
    if let Err(e) = emit(link, &env) {
        lock(&shared.pending).remove(&env.id);
        return Err(e);
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(answer)) => Ok(answer.into_reply()),
        _ => {
            lock(&shared.pending).remove(&env.id);
            Err(format!("no reply to {} in time", env.event))
        }
    }
}

async fn drive(
    shared: &Arc<Shared>,
    session: &Session,
    outbox: &mut mpsc::Receiver<Outbound>,
    carry: &mut Option<Outbound>,
    stop: &mut watch::Receiver<bool>,
    home: Option<&str>,
) -> End {
    let mut rebalance = tokio::time::interval(REBALANCE_CHECK);
    rebalance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rebalance.tick().await;
    // Probes of the preferred hub run beside this loop (a frozen hub accepts the TCP
    // connection and then says nothing): heartbeats and sends never wait for one.
    let (probed_tx, mut probed) = mpsc::channel::<bool>(1);
    let mut probing = false;
    if let Some(out) = carry.take() {
        if let Err(out) = send_out(&session.link, out).await {
            *carry = Some(out);
            return End::Lost;
        }
    }
    let missed = Arc::new(AtomicU32::new(0));
    let mut heartbeat = tokio::time::interval(session.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                while let Ok(out) = outbox.try_recv() {
                    if send_out(&session.link, out).await.is_err() {
                        break;
                    }
                }
                return End::Stopped;
            }
            _ = session.link.closed() => return End::Lost,
            msg = outbox.recv() => match msg {
                None => return End::Stopped,
                Some(out) => {
                    if !matches!(&out, Outbound::One(env) if is_housekeeping(env)) {
                        shared.touch();
                    }
                    if let Err(out) = send_out(&session.link, out).await {
                        *carry = Some(out);
                        return End::Lost;
                    }
                }
            },
            _ = rebalance.tick(), if home.is_some() && !probing => {
                if let Some(home) = home.filter(|_| is_idle(shared)) {
                    probing = true;
                    let (shared, home, tx) = (shared.clone(), home.to_string(), probed_tx.clone());
                    tokio::spawn(async move {
                        let _ = tx.send(hub_answers(&shared, &home).await).await;
                    });
                }
            }
            Some(answers) = probed.recv() => {
                probing = false;
                if answers && is_idle(shared) {
                    return End::Rebalance;
                }
            }
            _ = heartbeat.tick() => {
                if missed.load(Ordering::Relaxed) >= MAX_MISSED_HEARTBEATS {
                    warn!("heartbeats unanswered; dropping the session");
                    return End::Lost;
                }
                if send_heartbeat(shared, session, missed.clone()).is_err() {
                    return End::Lost;
                }
            }
        }
    }
}

/// True when no work is in flight: no load, and no envelope but heartbeats, answers and
/// empty held-task reports sent or received for [`QUIET_FOR`]. (A request still waiting then, such as an engine's
/// long-polling `lease_tasks`, is answered by component id wherever the component is, or
/// times out and is asked again; nothing it stands for is lost by moving.)
fn is_idle(shared: &Shared) -> bool {
    shared.load.load(Ordering::Relaxed) == 0 && shared.quiet_for() >= QUIET_FOR
}

/// Envelopes that say nothing is in flight: a held-task report listing no task (providers
/// send them to an engine for a minute after its last task, engines to queue-managers).
fn is_housekeeping(env: &Envelope) -> bool {
    env.event == events::TASKS_HELD
        && env
            .payload
            .get("tasks")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
}

/// Whether the hub at `url` accepts a Socket.IO session now (opened and closed at once).
async fn hub_answers(shared: &Arc<Shared>, url: &str) -> bool {
    match transport::connect(url, shared.config.auth.as_ref(), PROBE_TIMEOUT, |_| {}).await {
        Ok(link) => {
            link.close();
            true
        }
        Err(_) => false,
    }
}

/// Sends one heartbeat; a spawned waiter resets `missed` when the hub answers.
fn send_heartbeat(
    shared: &Arc<Shared>,
    session: &Session,
    missed: Arc<AtomicU32>,
) -> Result<(), String> {
    let payload = HeartbeatPayload {
        load: shared.load.load(Ordering::Relaxed),
        capacity: shared
            .config
            .registration
            .as_ref()
            .map(|_| shared.capacity.load(Ordering::Relaxed)),
        metadata: lock(&shared.metadata).take(),
    };
    let mut env = Envelope::new(
        Target::Hub,
        events::HEARTBEAT,
        serde_json::to_value(payload).unwrap_or(Value::Null),
    );
    env.source = shared.id.clone();
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(env.id.clone(), tx);
    missed.fetch_add(1, Ordering::Relaxed);
    let id = env.id.clone();
    if let Err(e) = emit(&session.link, &env) {
        lock(&shared.pending).remove(&id);
        return Err(e);
    }
    let wait = session.heartbeat_interval * MAX_MISSED_HEARTBEATS;
    let shared = shared.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(_)) => missed.store(0, Ordering::Relaxed),
            _ => {
                lock(&shared.pending).remove(&id);
            }
        }
    });
    Ok(())
}

fn emit(link: &Link, env: &Envelope) -> Result<(), String> {
    link.emit_envelope(SIO_ENVELOPE_EVENT, env)
}

/// Most bytes of a message's parts queued for the socket at once: the next part is made
/// only once the ones before it are (nearly) written, so a big message is never all in
/// memory as parts.
const PARTS_QUEUED_BYTES: usize = 2 * MESSAGE_PART_BYTES;

/// Sends a message: whole, or its parts one after another as the socket takes them. What
/// could not be sent (the connection went) is given back, to go on the next connection
/// (a message in parts from where it stopped).
async fn send_out(link: &Link, out: Outbound) -> Result<(), Outbound> {
    match out {
        Outbound::One(env) => emit(link, &env).map_err(|_| Outbound::One(env)),
        Outbound::Parts(mut parts) => {
            while let Some(part) = parts.peek() {
                let sent = match link.drained_to(PARTS_QUEUED_BYTES).await {
                    Ok(()) => emit(link, &part),
                    Err(e) => Err(e),
                };
                if sent.is_err() {
                    return Err(Outbound::Parts(parts));
                }
                parts.advance();
            }
            Ok(())
        }
    }
}

/// Routes one incoming Socket.IO event: replies complete pending requests, everything else
/// goes to the incoming channel. Runs inside the transport's reader, so it never waits.
fn dispatch(shared: &Arc<Shared>, body: &str) {
    let env = match decode(body) {
        Ok(env) => env,
        Err(e) => {
            warn!(error = %e, "hub sent an event that is not an envelope");
            return;
        }
    };
    // A part of a big message: nothing goes on until the whole message is here.
    let env = if env.part.is_some() {
        let (event, source) = (env.event.clone(), env.source.clone());
        let joined = lock(&shared.parts).add(env, std::time::Instant::now());
        match joined {
            Ok(Some(whole)) => whole,
            Ok(None) => return,
            Err(e) => {
                warn!(%event, %source, error = %e, "message in parts dropped");
                return;
            }
        }
    } else {
        env
    };
    let is_answer = matches!(
        env.event.as_str(),
        events::REPLY | events::REGISTERED | events::ERROR
    );
    if !is_answer && !is_housekeeping(&env) {
        // Work or news for this client.
        shared.touch();
    }
    if is_answer {
        if let Some(cid) = &env.correlation_id {
            if let Some(tx) = lock(&shared.pending).remove(cid) {
                let _ = tx.send(answer_of(env));
                return;
            }
        }
        if env.event == events::REPLY {
            debug!(correlation_id = ?env.correlation_id, "late reply dropped");
            return;
        }
        if env.event == events::ERROR {
            warn!(payload = %env.payload, "hub reported an error");
        }
    }
    let _ = shared.incoming.send(env);
}

/// Messages larger than this whose event is in [`events::KEPT_AS_TEXT`] keep their
/// payload as text (`Envelope::raw`) for the receiver to read into its own types.
const KEEP_AS_TEXT_ABOVE: usize = 64 * 1024;

/// Whether a message of `event`, `len` bytes long, keeps its payload as text for its
/// receiver (see [`decode`]).
pub(crate) fn kept_as_text(event: &str, len: usize) -> bool {
    // A reply is read by `answer_of`, in one pass from its text.
    event == events::REPLY
        || events::READ_AS_TEXT.contains(&event)
        || (len > KEEP_AS_TEXT_ABOVE && events::KEPT_AS_TEXT.contains(&event))
}

/// An incoming Socket.IO event's envelope. The payload is first only delimited (not
/// parsed); an event of [`events::READ_AS_TEXT`], or a large message of an event in
/// [`events::KEPT_AS_TEXT`], keeps it as text for the receiver to read into its own types;
/// anything else has it parsed once.
pub(crate) fn decode(body: &str) -> Result<Envelope, serde_json::Error> {
    let (_, env) = serde_json::from_str::<(IgnoredAny, Envelope<Option<&RawValue>>)>(body)?;
    if kept_as_text(&env.event, body.len()) {
        let mut raw = None;
        let mut env = env.map_payload(|p| {
            raw = p;
            Value::Null
        });
        env.raw = raw.map(|r| JsonText::from_raw(r.to_owned()));
        return Ok(env);
    }
    let mut payload = Ok(Value::Null);
    let env = env.map_payload(|p| {
        if let Some(p) = p {
            payload = serde_json::from_str(p.get());
        }
        Value::Null
    });
    let payload = payload?;
    Ok(Envelope { payload, ..env })
}

/// The error of a refused connection: the hub's `connect_error` message reads
/// `GZnnnn: message (hint: …)`; its code is kept (GZ4001 when there is none).
fn refusal(reason: &str) -> GzError {
    let (code, rest) = match reason.split_once(": ") {
        Some((c, rest)) if c.starts_with("GZ") && c.len() == 6 => (c, rest),
        _ => ("GZ4001", reason),
    };
    let (message, hint) = match rest.rsplit_once(" (hint: ") {
        Some((m, h)) => (m, Some(h.trim_end_matches(')'))),
        None => (rest, None),
    };
    let kind = ErrorCode::from_code(code).unwrap_or(ErrorCode::AuthInvalid);
    let err = GzError::new(kind, format!("the hub refused the connection: {message}"));
    match hint {
        Some(h) => err.with_hint(h),
        None => err,
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn refusals_keep_the_hubs_code_and_hint() {
        let e = refusal("GZ4002: API key 0123 expired (hint: ask an admin)");
        assert_eq!(e.code, "GZ4002");
        assert_eq!(e.hint.as_deref(), Some("ask an admin"));
        assert_eq!(refusal("nope").code, "GZ4001");
    }
}

#[cfg(test)]
mod spread_tests {
    use super::*;

    #[test]
    fn components_spread_evenly_and_always_pick_the_same_hub() {
        assert_eq!(preferred_index("anything", 1), 0);
        assert_eq!(preferred_index("anything", 0), 0);
        for hubs in [2usize, 3] {
            let mut per_hub = vec![0usize; hubs];
            for n in 0..3000 {
                let id = format!("python-provider-{n}");
                let hub = preferred_index(&id, hubs);
                assert_eq!(hub, preferred_index(&id, hubs), "stable");
                per_hub[hub] += 1;
            }
            let even = 3000 / hubs;
            assert!(
                per_hub
                    .iter()
                    .all(|&c| c > even * 9 / 10 && c < even * 11 / 10),
                "{per_hub:?}"
            );
        }
        // Fixed across builds and processes: FNV-1a.
        assert_eq!(preferred_index("ee-1", 2), 1);
        assert_eq!(preferred_index("py-1", 2), 0);
    }
}

#[cfg(test)]
pub(crate) mod decode_tests {
    use super::*;
    use gleitzeit_protocol::requests::{QueueManagerRequest, ResolverRequest};
    use serde_json::json;

    pub(crate) fn body(event: &str, payload: Value) -> String {
        let env = Envelope::new(Target::Hub, event, payload);
        serde_json::to_string(&(SIO_ENVELOPE_EVENT, env)).expect("encode")
    }

    fn big_spec() -> Value {
        let tasks: Vec<Value> = (0..2000)
            .map(|i| json!({ "id": format!("t{i}"), "method": "python/execute", "parameters": { "code": "result = 1" } }))
            .collect();
        json!({ "name": "big", "tasks": tasks })
    }

    #[test]
    fn large_submissions_and_plans_stay_text_and_decode_as_before() {
        let spec = big_spec();
        let submit = json!({ "workflow_id": "w", "spec": spec });
        let text = body(events::WORKFLOW_SUBMIT, submit.clone());
        assert!(text.len() > KEEP_AS_TEXT_ABOVE);
        let mut kept = decode(&text).expect("decodes");
        assert!(kept.payload.is_null() && kept.raw.is_some());
        let mut parsed = Envelope::new(Target::Hub, events::WORKFLOW_SUBMIT, submit);
        assert_eq!(
            QueueManagerRequest::decode_envelope(&mut kept).expect("submit"),
            QueueManagerRequest::decode_envelope(&mut parsed).expect("submit"),
        );

        let plan = json!({ "workflow_id": "w", "spec": big_spec(), "finished": [] });
        let mut kept = decode(&body(events::WORKFLOW_PLAN, plan.clone())).expect("decodes");
        assert!(kept.raw.is_some());
        let mut parsed = Envelope::new(Target::Hub, events::WORKFLOW_PLAN, plan);
        assert_eq!(
            ResolverRequest::decode_envelope(&mut kept).expect("plan"),
            ResolverRequest::decode_envelope(&mut parsed).expect("plan"),
        );
    }

    #[test]
    fn a_payload_written_as_text_goes_out_as_it_is() {
        use gleitzeit_protocol::records::JsonText;
        let plan = json!({ "workflow_id": "w", "spec": big_spec(), "finished": [] });
        let text = JsonText::of(&plan).expect("text");
        let env = Envelope::with_text(Target::Hub, events::WORKFLOW_PLAN, text);
        let wire = env.to_wire().expect("wire");
        let (_, back): (String, Envelope) =
            serde_json::from_str(&format!("[\"{SIO_ENVELOPE_EVENT}\",{wire}]")).expect("parses");
        assert_eq!(back.payload, plan);
        assert_eq!((back.id, back.event), (env.id, env.event));
    }

    #[test]
    fn outcomes_and_lease_requests_stay_text_at_any_size_and_decode_as_parsed_ones() {
        use gleitzeit_protocol::requests::{EngineRequest, ProviderRequest};
        let outcomes = json!({ "outcomes": [{ "workflow_id": "w", "task_id": "t", "attempt": 1,
            "provider_id": "p", "result": { "n": [1, 2] }, "finished_at": 5 }] });
        let lease = json!({ "slots": { "python/execute": 4 }, "wait_ms": 100 });
        for (event, payload) in [
            (events::TASK_OUTCOMES, outcomes),
            (events::LEASE_TASKS, lease),
        ] {
            let mut kept = decode(&body(event, payload.clone())).expect("decodes");
            assert!(
                kept.payload.is_null() && kept.raw.is_some(),
                "{event} kept as text"
            );
            assert_eq!(kept.payload_as::<Value>().expect("readable"), payload);
            let mut parsed = Envelope::new(Target::Hub, event, payload);
            assert_eq!(
                QueueManagerRequest::decode_envelope(&mut kept).expect("decodes"),
                QueueManagerRequest::decode_envelope(&mut parsed).expect("decodes"),
            );
        }
        // The resolver reads finished tasks from text.
        let finished = json!({ "workflow_id": "w", "finished": [{ "task_id": "t",
            "status": "completed", "result": [1, "two"] }] });
        let mut kept = decode(&body(events::TASKS_FINISHED, finished.clone())).expect("decodes");
        assert!(kept.raw.is_some());
        let mut parsed = Envelope::new(Target::Hub, events::TASKS_FINISHED, finished);
        assert_eq!(
            ResolverRequest::decode_envelope(&mut kept).expect("decodes"),
            ResolverRequest::decode_envelope(&mut parsed).expect("decodes"),
        );
        // A provider reads its batch of tasks from text.
        let batch = json!({ "tasks": [{ "workflow_id": "w", "task_id": "t", "attempt": 1,
            "method": "python/execute", "params": { "code": "result = 1" } }] });
        let mut kept = decode(&body(events::EXECUTE_TASKS, batch.clone())).expect("decodes");
        assert!(kept.raw.is_some());
        let mut parsed = Envelope::new(Target::Hub, events::EXECUTE_TASKS, batch);
        assert_eq!(
            ProviderRequest::decode_envelope("p", &mut kept).expect("decodes"),
            ProviderRequest::decode_envelope("p", &mut parsed).expect("decodes"),
        );
        // The engine reads outcomes from text too.
        let mut kept =
            decode(&body(events::TASK_OUTCOMES, json!({ "outcomes": [] }))).expect("decodes");
        assert_eq!(
            EngineRequest::decode_envelope(&mut kept).expect("decodes"),
            EngineRequest::Outcomes(gleitzeit_protocol::payloads::TaskOutcomes {
                outcomes: vec![],
                lease: None,
            })
        );
        // A malformed payload kept as text is refused with GZ7020, like a parsed one.
        for bad in [json!({ "outcomes": 7 }), Value::Null, json!("x")] {
            let mut kept = decode(&body(events::TASK_OUTCOMES, bad)).expect("decodes");
            let err = QueueManagerRequest::decode_envelope(&mut kept).expect_err("refused");
            assert_eq!(err.code, "GZ7020");
            let mut kept = decode(&body(events::TASK_OUTCOMES, json!(1))).expect("decodes");
            let err = EngineRequest::decode_envelope(&mut kept).expect_err("refused");
            assert_eq!(err.code, "GZ7020");
        }
        // Text that is not JSON never becomes an envelope.
        assert!(decode("[\"envelope\", {\"id\": \"i\", \"target\": \"hub\", \"event\": \"task_outcomes\", \"payload\": {]}").is_err());
    }

    #[test]
    fn other_and_small_messages_are_parsed() {
        let big = json!({ "workflow_id": "w", "blob": "x".repeat(KEEP_AS_TEXT_ABOVE) });
        let env = decode(&body(events::TASKS_HELD, big.clone())).expect("decodes");
        assert!(env.raw.is_none());
        assert_eq!(env.payload, big);
        let small = json!({ "workflow_id": "w", "spec": { "name": "s", "tasks": [] } });
        let env = decode(&body(events::WORKFLOW_SUBMIT, small.clone())).expect("decodes");
        assert!(env.raw.is_none());
        assert_eq!(env.payload, small);
        assert!(decode("[\"envelope\", {\"nope\": 1}]").is_err());
    }
}
