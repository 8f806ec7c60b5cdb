//! A minimal Socket.IO v5 client over Engine.IO v4's websocket transport.
//!
//! Why not rust_socketio: its websocket transport leaves Nagle's algorithm on, and a
//! component that writes two small messages in a row (an event, then a reply) waits for the
//! hub's delayed ACK: ~45 ms per write, which made every task hop cost ~95 ms. Here the TCP
//! socket has `TCP_NODELAY`, outgoing frames are coalesced into one flush when several are
//! queued, and incoming events go straight to a callback that never waits.
//!
//! What is spoken (namespace `/` only, text messages only; one longer than 256 KiB is sent
//! in fragments, see [`FRAME_BYTES`]):
//! - Engine.IO: `0{open}` from the server, `2` ping → `3` pong, `1` close, `6` noop.
//! - Socket.IO: `40` / `40{auth}` connect → `40{sid}` joined or `44{error}` refused;
//!   `42["event",data]` events (with or without an ack id, acks are not used); `41` disconnect.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gleitzeit_protocol::Envelope;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use tracing::debug;

/// Why a connection attempt failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// Network or protocol trouble: worth retrying.
    Transient(String),
    /// The server refused the namespace connection (e.g. credentials): retrying won't help.
    Refused(String),
    /// This side cannot connect as configured (e.g. an unreadable `GLEITZEIT_TLS_CA`).
    Setup(gleitzeit_protocol::errors::GzError),
}

/// An open connection: send events, learn when it closed.
pub(crate) struct Link {
    out: Outgoing,
    closed: Arc<Notify>,
}

/// The frames waiting for the writer, and how many bytes they hold (so that a sender of
/// many big frames can wait for them to go out instead of queuing them all:
/// [`Link::drained_to`]).
#[derive(Clone)]
struct Outgoing {
    tx: mpsc::UnboundedSender<String>,
    queued: Arc<AtomicUsize>,
    /// Notified whenever the writer wrote what was queued.
    drained: Arc<Notify>,
    /// Set when the writer stopped (nothing queued will leave any more).
    gone: Arc<AtomicBool>,
}

impl Outgoing {
    fn push(&self, frame: String) -> Result<(), String> {
        let len = frame.len();
        self.queued.fetch_add(len, Ordering::AcqRel);
        self.tx.send(frame).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            "connection closed".to_string()
        })
    }

    /// The writer wrote `bytes` of what was queued.
    fn wrote(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.drained.notify_waiters();
    }
}

impl Link {
    /// Queues one event whose argument is `env`. The packet (`42["<event>",<envelope>]`) is
    /// written once, into a buffer sized for it: a 28 MB workflow plan was copied twice and
    /// each copy grown by doubling. Fails once the connection is closed.
    pub(crate) fn emit_envelope(&self, event: &str, env: &Envelope) -> Result<(), String> {
        let mut out = Vec::with_capacity(env.wire_size_hint() + event.len() + 8);
        out.extend_from_slice(b"42[");
        serde_json::to_writer(&mut out, event).map_err(|e| e.to_string())?;
        out.push(b',');
        env.write_wire(&mut out).map_err(|e| e.to_string())?;
        out.push(b']');
        let packet = String::from_utf8(out).map_err(|e| e.to_string())?;
        self.out.push(packet)
    }

    /// Waits until at most `bytes` wait to be written (the writer keeps up), or fails once
    /// the connection is gone.
    pub(crate) async fn drained_to(&self, bytes: usize) -> Result<(), String> {
        loop {
            let drained = self.out.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.out.gone.load(Ordering::Acquire) {
                return Err("connection closed".to_string());
            }
            if self.out.queued.load(Ordering::Acquire) <= bytes {
                return Ok(());
            }
            // The writer notifies after each write; the pause only bounds a lost wake-up.
            let _ = tokio::time::timeout(Duration::from_millis(50), drained).await;
        }
    }

    /// Completes when the connection is gone.
    pub(crate) async fn closed(&self) {
        self.closed.notified().await;
    }

    /// Leaves the namespace and closes the socket.
    pub(crate) fn close(&self) {
        let _ = self.out.push("41".to_string());
        let _ = self.out.push(String::new());
    }
}

/// Largest message accepted from the hub; matches the hub's own limit (a 100,000-task
/// workflow travels as one message of ~20 MiB; tungstenite's default frame limit is 16 MiB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// The websocket URL of a hub URL (`http://h:p` → `ws://h:p/socket.io/?EIO=4&transport=websocket`).
pub(crate) fn websocket_url(hub_url: &str) -> Result<String, String> {
    let (scheme, rest) = hub_url
        .split_once("://")
        .ok_or_else(|| format!("invalid hub URL {hub_url:?}: expected http://host:port"))?;
    let ws = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => {
            return Err(format!(
                "unsupported scheme {other:?} in hub URL {hub_url:?}"
            ))
        }
    };
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!(
        "{ws}://{host}/socket.io/?EIO=4&transport=websocket"
    ))
}

/// Connects, joins namespace `/` (sending `auth` if given), and starts the reader and writer.
/// `on_event` gets the JSON array text of every `42` event (`["name",data]`).
pub(crate) async fn connect(
    hub_url: &str,
    auth: Option<&Value>,
    timeout: Duration,
    on_event: impl Fn(&str) + Send + 'static,
) -> Result<Link, ConnectError> {
    let url = websocket_url(hub_url).map_err(ConnectError::Refused)?;
    // `wss://`: rustls trusting the system roots and `GLEITZEIT_TLS_CA`.
    let connector = if url.starts_with("wss://") {
        let config = crate::tls::client_config().map_err(|e| ConnectError::Setup(e.into()))?;
        Some(tokio_tungstenite::Connector::Rustls(config))
    } else {
        None
    };
    let (ws, _) = tokio::time::timeout(
        timeout,
        tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            Some(ws_config()),
            true,
            connector,
        ),
    )
    .await
    .map_err(|_| ConnectError::Transient("websocket connect timed out".into()))?
    .map_err(|e| ConnectError::Transient(e.to_string()))?;
    let (mut sink, mut stream) = ws.split();

    let handshake = async {
        let open = next_text(&mut stream).await?;
        let open: Value = open
            .strip_prefix('0')
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| {
                ConnectError::Transient(format!("unexpected Engine.IO open packet {open:?}"))
            })?;
        let connect = match auth {
            Some(a) => format!("40{a}"),
            None => "40".to_string(),
        };
        sink.send(Message::text(connect))
            .await
            .map_err(|e| ConnectError::Transient(e.to_string()))?;
        loop {
            let frame = next_text(&mut stream).await?;
            if frame == "2" {
                sink.send(Message::text("3"))
                    .await
                    .map_err(|e| ConnectError::Transient(e.to_string()))?;
            } else if frame.starts_with("40") {
                return Ok(open);
            } else if let Some(err) = frame.strip_prefix("44") {
                // `44{"message": "..."}`: the hub's reason, e.g. "GZ4001: …".
                let reason = serde_json::from_str::<Value>(err)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| err.to_string());
                return Err(ConnectError::Refused(reason));
            }
        }
    };
    let open = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ConnectError::Transient("namespace was not joined in time".into()))??;
    let ping_ms = open
        .get("pingInterval")
        .and_then(Value::as_u64)
        .unwrap_or(25_000)
        + open
            .get("pingTimeout")
            .and_then(Value::as_u64)
            .unwrap_or(20_000);

    let closed = Arc::new(Notify::new());
    let (tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let out = Outgoing {
        tx,
        queued: Arc::new(AtomicUsize::new(0)),
        drained: Arc::new(Notify::new()),
        gone: Arc::new(AtomicBool::new(false)),
    };
    let pong = out.clone();
    let reader_closed = closed.clone();
    tokio::spawn(async move {
        let silence = Duration::from_millis(ping_ms);
        loop {
            let frame = match tokio::time::timeout(silence, stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) => break,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => {
                    debug!(error = %e, "websocket read failed");
                    break;
                }
                Err(_) => {
                    debug!("no ping from the hub in time");
                    break;
                }
            };
            match frame.as_bytes().first() {
                Some(b'2') => {
                    let _ = pong.push("3".to_string());
                }
                Some(b'1') => break,
                Some(b'4') => {
                    if frame.starts_with("41") {
                        break;
                    }
                    if let Some(body) = event_body(&frame) {
                        on_event(body);
                    }
                }
                _ => {}
            }
        }
        reader_closed.notify_waiters();
        reader_closed.notify_one();
    });
    let writer_closed = closed.clone();
    let writer = out.clone();
    tokio::spawn(async move {
        'outer: while let Some(frame) = out_rx.recv().await {
            let mut next = Some(frame);
            let mut bytes = 0;
            // Coalesce whatever is queued into one flush.
            while let Some(f) = next.take() {
                if f.is_empty() {
                    let _ = sink.close().await;
                    break 'outer;
                }
                bytes += f.len();
                for message in frames_of(f) {
                    if sink.feed(message).await.is_err() {
                        break 'outer;
                    }
                }
                next = out_rx.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                break;
            }
            writer.wrote(bytes);
        }
        writer.gone.store(true, Ordering::Release);
        writer.drained.notify_waiters();
        writer_closed.notify_waiters();
        writer_closed.notify_one();
    });
    Ok(Link { out, closed })
}

/// Packets longer than this go out as several websocket frames of at most this size (one
/// message in fragments, RFC 6455 5.4). The receiver's websocket layer keeps a read buffer
/// as large as the largest frame it was sent for as long as the connection lives: a 28 MB
/// workflow sent as one frame kept 28 MB in the hub for every connection that sent one.
const FRAME_BYTES: usize = 256 * 1024;

/// The websocket message(s) that carry `packet`: itself, or its fragments (the first a text
/// frame, the rest continuations, the last final), slices of one buffer.
fn frames_of(packet: String) -> Vec<Message> {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    if packet.len() <= FRAME_BYTES {
        return vec![Message::text(packet)];
    }
    let bytes = tokio_tungstenite::tungstenite::Bytes::from(packet.into_bytes());
    let count = bytes.len().div_ceil(FRAME_BYTES);
    (0..count)
        .map(|k| {
            let start = k * FRAME_BYTES;
            let end = (start + FRAME_BYTES).min(bytes.len());
            let kind = if k == 0 { Data::Text } else { Data::Continue };
            Message::Frame(Frame::message(
                bytes.slice(start..end),
                OpCode::Data(kind),
                k + 1 == count,
            ))
        })
        .collect()
}

async fn next_text<S>(stream: &mut S) -> Result<String, ConnectError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(_))) | None => {
                return Err(ConnectError::Transient(
                    "connection closed during the handshake".into(),
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ConnectError::Transient(e.to_string())),
        }
    }
}

/// The JSON array of `42["name",data]` or `42<ack id>["name",data]` on namespace `/`.
fn event_body(frame: &str) -> Option<&str> {
    let body = frame
        .strip_prefix("42")?
        .trim_start_matches(|c: char| c.is_ascii_digit());
    body.starts_with('[').then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls() {
        assert_eq!(
            websocket_url("http://127.0.0.1:8000").ok().as_deref(),
            Some("ws://127.0.0.1:8000/socket.io/?EIO=4&transport=websocket")
        );
        assert_eq!(
            websocket_url("https://hub.example:443/").ok().as_deref(),
            Some("wss://hub.example:443/socket.io/?EIO=4&transport=websocket")
        );
        assert!(websocket_url("ftp://x").is_err());
        assert!(websocket_url("nonsense").is_err());
    }

    #[test]
    fn an_envelope_packet_is_the_event_name_and_the_envelope_as_on_the_wire() {
        let (tx, mut sent) = mpsc::unbounded_channel();
        let link = Link {
            out: Outgoing {
                tx,
                queued: Arc::new(AtomicUsize::new(0)),
                drained: Arc::new(Notify::new()),
                gone: Arc::new(AtomicBool::new(false)),
            },
            closed: Arc::new(Notify::new()),
        };
        let tree = Envelope::new(
            gleitzeit_protocol::Target::Hub,
            "ping",
            serde_json::json!({"a": [1, "\"q\" ü"]}),
        );
        let text = tree.reply_ok_text(&vec!["x"; 1000]).expect("text");
        for env in [tree, text] {
            link.emit_envelope("gz_envelope", &env).expect("sent");
            let packet = sent.try_recv().expect("a packet");
            let wire = env.to_wire().expect("wire");
            assert_eq!(packet, format!(r#"42["gz_envelope",{wire}]"#));
            assert_eq!(event_body(&packet).map(str::len), Some(wire.len() + 16));
            // Counted as queued until the writer says it wrote it.
            assert_eq!(link.out.queued.load(Ordering::Acquire), packet.len());
            link.out.wrote(packet.len());
        }
    }

    #[test]
    fn a_long_packet_goes_out_in_fragments_of_one_message() {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        let short = "42[\"x\",1]".to_string();
        assert!(matches!(&frames_of(short.clone())[..], [Message::Text(t)] if t.as_str() == short));
        // Multi-byte characters may be cut between fragments: only the whole is UTF-8.
        let long: String = "ü".repeat(FRAME_BYTES + 7);
        let frames = frames_of(long.clone());
        assert_eq!(frames.len(), 3);
        let mut joined = Vec::new();
        for (k, message) in frames.iter().enumerate() {
            let Message::Frame(frame) = message else {
                panic!("fragment {k} is not a frame");
            };
            let want = if k == 0 { Data::Text } else { Data::Continue };
            assert_eq!(frame.header().opcode, OpCode::Data(want));
            assert_eq!(frame.header().is_final, k == 2);
            assert!(frame.payload().len() <= FRAME_BYTES);
            joined.extend_from_slice(frame.payload());
        }
        assert_eq!(joined, long.as_bytes());
    }

    #[test]
    fn event_bodies_with_and_without_ack_ids() {
        assert_eq!(
            event_body(r#"42["reply",{"a":1}]"#),
            Some(r#"["reply",{"a":1}]"#)
        );
        assert_eq!(event_body(r#"4217["x",2]"#), Some(r#"["x",2]"#));
        assert_eq!(event_body("42not json"), None);
        assert_eq!(event_body("41"), None);
    }
}
