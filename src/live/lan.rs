//! LAN signaling: a WebSocket at `/signaling` on the local HTTP server, speaking the KVS
//! message shapes, so a phone on the home network can watch without any cloud. One
//! socket is one viewer. The web server's authentication covers it (the viewer page's
//! session cookie, or a bearer token on the upgrade request).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::message::{self, Inbound, Outbound, MAX_MESSAGE_BYTES};

/// Messages waiting to go out on one socket; a viewer that does not read loses them.
const SOCKET_QUEUE: usize = 64;
const ROUTER_QUEUE: usize = 64;
const MAX_LAN_CLIENT_ID: usize = 64;

enum RouterCmd {
    Register {
        client: String,
        conn: u64,
        tx: mpsc::Sender<String>,
    },
    Unregister {
        client: String,
        conn: u64,
    },
}

/// What the `/signaling` handler needs. Cheap to clone.
#[derive(Clone)]
pub struct LanSignaling {
    master: mpsc::Sender<Inbound>,
    router: mpsc::Sender<RouterCmd>,
    next_conn: Arc<AtomicU64>,
    /// Signaling sockets open now.
    open: Arc<AtomicUsize>,
}

/// Messages a socket may send in one second (an offer and a few dozen trickled
/// candidates is the most a real viewer sends); a socket past it is closed.
pub const MAX_MESSAGES_PER_S: u32 = 50;

/// Counts a socket's messages in one-second windows.
struct Rate {
    window: std::time::Instant,
    count: u32,
}

impl Rate {
    fn new(now: std::time::Instant) -> Self {
        Self {
            window: now,
            count: 0,
        }
    }

    /// Counts one message; true once the window holds more than `MAX_MESSAGES_PER_S`.
    fn over(&mut self, now: std::time::Instant) -> bool {
        if now.duration_since(self.window) >= std::time::Duration::from_secs(1) {
            *self = Self::new(now);
        }
        self.count += 1;
        self.count > MAX_MESSAGES_PER_S
    }
}

/// Initial read buffer of a signaling socket.
const SOCKET_READ_BUFFER: usize = 8 * 1024;
/// Most signaling sockets open at once (a few per possible viewer): a client that opens
/// sockets and never closes them cannot exhaust the camera.
pub const MAX_SOCKETS: usize = 40;

/// Counts an open socket while alive.
struct OpenSocket(Arc<AtomicUsize>);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the router that delivers the master's answers and candidates to sockets.
pub fn spawn(
    master: mpsc::Sender<Inbound>,
    mut outbound: mpsc::Receiver<Outbound>,
    cancel: CancellationToken,
) -> (LanSignaling, JoinHandle<()>) {
    let (router, mut commands) = mpsc::channel(ROUTER_QUEUE);
    let to_master = master.clone();
    let task = tokio::spawn(async move {
        let mut sockets: HashMap<String, (u64, mpsc::Sender<String>)> = HashMap::new();
        loop {
            // Biased: a socket registers before its offer reaches the master, so handling
            // commands first guarantees the answer finds the socket.
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                Some(cmd) = commands.recv() => match cmd {
                    RouterCmd::Register { client, conn, tx } => { sockets.insert(client, (conn, tx)); }
                    RouterCmd::Unregister { client, conn } => {
                        // Only the client's current socket speaks for it: a reloaded page's
                        // old socket closing late must not end the new session.
                        if sockets.get(&client).is_some_and(|(c, _)| *c == conn) {
                            sockets.remove(&client);
                            if to_master.try_send(Inbound::Left { from: client.clone() }).is_err() {
                                debug!(client = %client, "live master busy; the connect timeout frees the viewer");
                            }
                        }
                    }
                },
                Some(out) = outbound.recv() => match sockets.get(out.recipient()) {
                    Some((_, tx)) => {
                        if tx.try_send(message::to_viewer(&out)).is_err() {
                            warn!(client = out.recipient(), "viewer socket is not reading; message dropped");
                        }
                    }
                    None => debug!(client = out.recipient(), "no socket for viewer; message dropped"),
                },
            }
        }
    });
    let lan = LanSignaling {
        master,
        router,
        next_conn: Arc::new(AtomicU64::new(1)),
        open: Arc::new(AtomicUsize::new(0)),
    };
    (lan, task)
}

#[derive(Debug, Deserialize)]
pub struct SignalingQuery {
    #[serde(rename = "clientId")]
    client_id: Option<String>,
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LAN_CLIENT_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `GET /signaling?clientId=…` (WebSocket).
pub async fn handler(
    ws: WebSocketUpgrade,
    Query(q): Query<SignalingQuery>,
    State(lan): State<LanSignaling>,
) -> Response {
    let conn = lan.next_conn.fetch_add(1, Ordering::Relaxed);
    let client = q.client_id.unwrap_or_else(|| format!("lan-{conn}"));
    if !valid_client_id(&client) {
        return (
            StatusCode::BAD_REQUEST,
            "clientId: 1-64 letters, digits, '-' or '_'\n",
        )
            .into_response();
    }
    if lan.open.fetch_add(1, Ordering::Relaxed) >= MAX_SOCKETS {
        lan.open.fetch_sub(1, Ordering::Relaxed);
        warn!(client = %client, "signaling socket refused: {MAX_SOCKETS} already open");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many signaling connections; close unused viewers and retry\n",
        )
            .into_response();
    }
    let guard = OpenSocket(Arc::clone(&lan.open));
    // Signaling is a few small messages: small buffers keep an idle socket cheap
    // (tungstenite's defaults are 128 KiB each way).
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(SOCKET_READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            run_socket(socket, lan, client, conn).await;
            drop(guard);
        })
}

async fn run_socket(socket: WebSocket, lan: LanSignaling, client: String, conn: u64) {
    let (tx, mut rx) = mpsc::channel(SOCKET_QUEUE);
    let register = RouterCmd::Register {
        client: client.clone(),
        conn,
        tx,
    };
    if lan.router.send(register).await.is_err() {
        return;
    }
    info!(client = %client, "LAN signaling connected");
    let (mut sink, mut stream) = socket.split();
    let mut rate = Rate::new(std::time::Instant::now());
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(_) | Message::Binary(_))) if rate.over(std::time::Instant::now()) => {
                    warn!(client = %client, "signaling socket closed: more than {MAX_MESSAGES_PER_S} messages a second");
                    break;
                }
                Some(Ok(Message::Text(text))) => match message::parse_viewer(&text, &client) {
                    Ok(inbound) => {
                        if lan.master.send(inbound).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(client = %client, error = %e, "ignoring a bad signaling message");
                        let refused = Outbound::Refused { to: client.clone(), reason: format!("ignored: {e}") };
                        let _ = sink.send(Message::Text(message::to_viewer(&refused).into())).await;
                    }
                },
                Some(Ok(Message::Binary(_))) => warn!(client = %client, "ignoring a binary signaling message"),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            Some(out) = rx.recv() => {
                if sink.send(Message::Text(out.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = lan
        .router
        .send(RouterCmd::Unregister {
            client: client.clone(),
            conn,
        })
        .await;
    info!(client = %client, "LAN signaling disconnected");
}
