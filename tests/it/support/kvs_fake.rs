//! A fake of KVS WebRTC signaling, faithful where the daemon could get it wrong:
//!
//! - control plane (HTTP, REST-JSON): DescribeSignalingChannel (404 until created),
//!   CreateSignalingChannel, GetSignalingChannelEndpoint, GetIceServerConfig, each with
//!   its SigV4 `Authorization` verified against the test credentials;
//! - the master WSS endpoint (TLS from a test CA): the presigned query is verified
//!   (signature, expiry ≤ 299 s, `host` only, session token signed, known channel ARN);
//!   messages from the master are checked (action, recipient, base64 JSON payload ≤ 10 KB,
//!   answer/candidate shapes) and the 5 SDP/s and 20 candidates/s limits; the newest master
//!   connection wins; messages for an absent master are held 60 s, as the service does;
//! - a plain WebSocket viewer side speaking the LAN viewer messages (the test viewer);
//! - faults: drop the master socket, GO_AWAY (then close after a grace), RECONNECT_ICE_SERVER,
//!   refuse the next handshake with a status.
//!
//! Every check that fails is recorded in `errors()`; tests assert it stays empty.
// tungstenite's handshake callback returns its large error response by value.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request};
use tokio_tungstenite::tungstenite::Message;

use super::pki::Pki;
use super::sigv4;

pub const REGION: &str = "eu-west-1";
/// How long a master messages wait for the master to (re)connect.
const MESSAGE_TTL: Duration = Duration::from_secs(60);

enum ToMaster {
    Text(String),
    /// Close the TCP connection abruptly (no close frame).
    Drop,
}

#[derive(Default)]
struct Shared {
    channels: HashMap<String, String>,
    calls: Vec<String>,
    errors: Vec<String>,
    master: Option<(u64, mpsc::UnboundedSender<ToMaster>)>,
    master_connects: u64,
    viewers: HashMap<String, mpsc::UnboundedSender<String>>,
    held: VecDeque<(Instant, String)>,
    refuse_next: Option<u16>,
    /// GetIceServerConfig's `IceServerList`, when a test sets one.
    ice_servers: Option<Value>,
}

/// The running fake; its tasks stop with the test's runtime.
#[derive(Clone)]
pub struct FakeKvs {
    /// `aws.endpoint_url` for the daemon.
    pub control_url: String,
    /// PEM file of the CA that signed the WSS certificate (`SSL_CERT_FILE` for the daemon).
    pub ca_pem: std::path::PathBuf,
    /// The CA behind `ca_pem`, for other servers the daemon must trust (a TURN server).
    pub pki: Arc<Pki>,
    /// An empty file standing in for ~/.aws/config and credentials.
    empty: std::path::PathBuf,
    viewer_addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// Delay between GO_AWAY and the service closing the socket.
    pub go_away_grace: Duration,
}

impl FakeKvs {
    pub async fn start(dir: &std::path::Path) -> Self {
        let pki = Pki::new(dir);
        let tls = pki.leaf("kvs-signaling", &["127.0.0.1"]).server_config();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let wss = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let viewers = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let control_url = format!("http://{}", control.local_addr().unwrap());
        let ca_pem = pki.ca_pem.clone();
        let pki = Arc::new(pki);
        let fake = FakeKvs {
            control_url: control_url.clone(),
            ca_pem,
            pki,
            empty: super::write_file(dir, "empty-aws-config", ""),
            viewer_addr: viewers.local_addr().unwrap(),
            shared: Arc::clone(&shared),
            go_away_grace: Duration::from_secs(5),
        };
        let ctx = Ctx {
            shared: Arc::clone(&shared),
            wss_url: format!("wss://{}", wss.local_addr().unwrap()),
            https_url: control_url,
        };
        let app = axum::Router::new().fallback(control_plane).with_state(ctx);
        tokio::spawn(async move { axum::serve(control, app).await.unwrap() });
        tokio::spawn(accept_masters(wss, tls, Arc::clone(&shared)));
        tokio::spawn(accept_viewers(viewers, Arc::clone(&shared)));
        fake
    }

    /// The signaling URL a test viewer connects to.
    pub fn viewer_url(&self, client_id: &str) -> String {
        format!("ws://{}/?clientId={client_id}", self.viewer_addr)
    }

    /// The environment the daemon needs to reach this fake.
    pub fn daemon_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", sigv4::ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", sigv4::SECRET_KEY.into()),
            ("AWS_SESSION_TOKEN", sigv4::SESSION_TOKEN.into()),
            ("AWS_CONFIG_FILE", self.empty.display().to_string()),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                self.empty.display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("SSL_CERT_FILE", self.ca_pem.display().to_string()),
        ]
    }

    /// The `[live]` and `[aws]` config for a daemon using this fake.
    pub fn daemon_config(&self, channel: &str) -> String {
        format!(
            "[live]\nsignaling = \"kvs\"\nchannel_name = \"{channel}\"\nice_addresses = [\"127.0.0.1\"]\n\
             [aws]\nregion = \"{REGION}\"\nendpoint_url = \"{}\"\n",
            self.control_url
        )
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut self.shared.lock().unwrap())
    }

    pub fn errors(&self) -> Vec<String> {
        self.with(|s| s.errors.clone())
    }

    /// Control-plane calls made so far, by operation name.
    pub fn calls(&self, op: &str) -> usize {
        self.with(|s| s.calls.iter().filter(|c| c.as_str() == op).count())
    }

    pub fn master_connects(&self) -> u64 {
        self.with(|s| s.master_connects)
    }

    pub fn master_online(&self) -> bool {
        self.with(|s| s.master.is_some())
    }

    /// Closes the master's TCP connection with no close frame.
    pub fn drop_master(&self) {
        self.with(|s| {
            if let Some((_, tx)) = s.master.take() {
                let _ = tx.send(ToMaster::Drop);
            }
        });
    }

    /// Sends GO_AWAY, and closes that connection after `go_away_grace`.
    pub fn go_away(&self) {
        let master = self.with(|s| s.master.clone());
        if let Some((_, tx)) = master {
            let _ = tx.send(ToMaster::Text(
                json!({"senderClientId":"","messageType":"GO_AWAY","messagePayload":""})
                    .to_string(),
            ));
            let grace = self.go_away_grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let _ = tx.send(ToMaster::Drop);
            });
        }
    }

    pub fn reconnect_ice_server(&self) {
        self.to_master(
            json!({"senderClientId":"","messageType":"RECONNECT_ICE_SERVER","messagePayload":""})
                .to_string(),
        );
    }

    /// What GetIceServerConfig answers from now on (its `IceServerList`).
    pub fn set_ice_servers(&self, list: Value) {
        self.with(|s| s.ice_servers = Some(list));
    }

    /// The next master handshake is answered with `status` (and a `Date` header).
    pub fn refuse_next(&self, status: u16) {
        self.with(|s| s.refuse_next = Some(status));
    }

    /// Sends any text to the master, as if the service had (for bad-input tests).
    pub fn send_raw(&self, text: &str) {
        self.to_master(text.to_owned());
    }

    fn to_master(&self, text: String) {
        deliver(&mut self.shared.lock().unwrap(), text);
    }

    /// Waits until `f` holds, polling.
    pub async fn wait(&self, limit: Duration, f: impl Fn(&FakeKvs) -> bool) -> bool {
        super::poll_until(limit, || f(self)).await
    }
}

/// Sends to the current master, or holds the message until one connects.
fn deliver(s: &mut Shared, text: String) {
    if let Some((_, tx)) = &s.master {
        if tx.send(ToMaster::Text(text.clone())).is_ok() {
            return;
        }
    }
    s.held.push_back((Instant::now(), text));
}

#[derive(Clone)]
struct Ctx {
    shared: Arc<Mutex<Shared>>,
    wss_url: String,
    https_url: String,
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-ErrorType", kind),
            ("content-type", "application/json"),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn control_plane(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let op = match path.as_str() {
        "/describeSignalingChannel" => "DescribeSignalingChannel",
        "/createSignalingChannel" => "CreateSignalingChannel",
        "/getSignalingChannelEndpoint" => "GetSignalingChannelEndpoint",
        "/v1/get-ice-server-config" => "GetIceServerConfig",
        _ => "unknown",
    };
    let mut s = ctx.shared.lock().unwrap();
    s.calls.push(op.to_owned());
    if let Err(e) = sigv4::verify_headers(
        method.as_str(),
        &path,
        uri.query().unwrap_or(""),
        &headers,
        &body,
        (REGION, "kinesisvideo"),
        chrono::Utc::now(),
    ) {
        s.errors.push(format!("{op}: {e}"));
        return aws_error(StatusCode::FORBIDDEN, "InvalidSignatureException", &e);
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let name = req["ChannelName"].as_str().unwrap_or_default().to_owned();
    let arn = req["ChannelARN"].as_str().unwrap_or_default().to_owned();
    let known_arn = s.channels.values().any(|a| *a == arn);
    match op {
        "DescribeSignalingChannel" => match s.channels.get(&name) {
            Some(arn) => json_ok(json!({"ChannelInfo": {
                "ChannelName": name, "ChannelARN": arn, "ChannelType": "SINGLE_MASTER",
                "ChannelStatus": "ACTIVE", "Version": "1",
                "SingleMasterConfiguration": {"MessageTtlSeconds": 60}}})),
            None => aws_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "The requested channel is not found or not active.",
            ),
        },
        "CreateSignalingChannel" => {
            if req["ChannelType"] != "SINGLE_MASTER" || name.is_empty() {
                s.errors
                    .push(format!("CreateSignalingChannel: bad request {req}"));
                return aws_error(StatusCode::BAD_REQUEST, "InvalidArgumentException", "bad");
            }
            let arn =
                format!("arn:aws:kinesisvideo:{REGION}:123456789012:channel/{name}/1700000000000");
            s.channels.insert(name, arn.clone());
            json_ok(json!({ "ChannelARN": arn }))
        }
        "GetSignalingChannelEndpoint" => {
            let conf = &req["SingleMasterChannelEndpointConfiguration"];
            let protocols = conf["Protocols"].to_string();
            if !known_arn
                || conf["Role"] != "MASTER"
                || !protocols.contains("WSS")
                || !protocols.contains("HTTPS")
            {
                s.errors
                    .push(format!("GetSignalingChannelEndpoint: bad request {req}"));
                return aws_error(StatusCode::BAD_REQUEST, "InvalidArgumentException", "bad");
            }
            json_ok(json!({"ResourceEndpointList": [
                {"Protocol": "WSS", "ResourceEndpoint": ctx.wss_url},
                {"Protocol": "HTTPS", "ResourceEndpoint": ctx.https_url}]}))
        }
        "GetIceServerConfig" => {
            if !known_arn {
                s.errors
                    .push(format!("GetIceServerConfig: unknown channel {arn:?}"));
                return aws_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    "no channel",
                );
            }
            // By default a TURN server nobody listens on: host candidates still connect
            // on loopback.
            let list = s.ice_servers.clone().unwrap_or_else(|| {
                json!([{
                    "Uris": ["turn:127.0.0.1:9?transport=udp", "turns:127.0.0.1:9?transport=tcp"],
                    "Username": "1700000000:user", "Password": "pass", "Ttl": 300}])
            });
            json_ok(json!({ "IceServerList": list }))
        }
        _ => {
            s.errors.push(format!("unknown call {method} {path}"));
            aws_error(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                "unknown",
            )
        }
    }
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn accept_masters(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Mutex<Shared>>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut next_id = 0u64;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        next_id += 1;
        let (acceptor, shared) = (acceptor.clone(), Arc::clone(&shared));
        tokio::spawn(serve_master(acceptor, tcp, shared, next_id));
    }
}

/// Checks the handshake request of a master connection.
fn check_handshake(req: &Request, s: &mut Shared) -> Result<(), (u16, String)> {
    if let Some(status) = s.refuse_next.take() {
        return Err((status, "refused by the test".into()));
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let query = req.uri().query().unwrap_or_default();
    let params = sigv4::verify_presigned(host, req.uri().path(), query, REGION, "kinesisvideo")
        .map_err(|e| (403, e))?;
    let arn = params
        .iter()
        .find(|(k, _)| k == "X-Amz-ChannelARN")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if !s.channels.values().any(|a| *a == arn) {
        return Err((404, format!("unknown channel {arn:?}")));
    }
    if params.iter().any(|(k, _)| k == "X-Amz-ClientId") {
        return Err((400, "a master sends no client id".into()));
    }
    Ok(())
}

async fn serve_master(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    shared: Arc<Mutex<Shared>>,
    id: u64,
) {
    let Ok(tls) = acceptor.accept(tcp).await else {
        shared
            .lock()
            .unwrap()
            .errors
            .push("TLS handshake failed".into());
        return;
    };
    let check = |req: &Request, resp| {
        let mut s = shared.lock().unwrap();
        match check_handshake(req, &mut s) {
            Ok(()) => Ok(resp),
            Err((status, why)) => {
                if status == 403 && why != "refused by the test" {
                    s.errors.push(format!("master handshake: {why}"));
                }
                let date = chrono::Utc::now().to_rfc2822().replace("+0000", "GMT");
                let mut r = ErrorResponse::new(Some(why));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r.headers_mut().insert("date", date.parse().unwrap());
                Err(r)
            }
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tls, check).await else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let held: Vec<String> = {
        let mut s = shared.lock().unwrap();
        s.master_connects += 1;
        // The newest master connection wins: the old one is closed.
        if let Some((_, old)) = s.master.replace((id, tx)) {
            let _ = old.send(ToMaster::Drop);
        }
        let now = Instant::now();
        s.held.retain(|(t, _)| now.duration_since(*t) < MESSAGE_TTL);
        s.held.drain(..).map(|(_, m)| m).collect()
    };
    let (mut sink, mut stream) = ws.split();
    for m in held {
        let _ = sink.send(Message::Text(m.into())).await;
    }
    let mut limits = Limits::default();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let mut s = shared.lock().unwrap();
                    match check_master_message(&text, &mut limits) {
                        Ok((to, forward)) => {
                            if let Some(v) = s.viewers.get(&to) {
                                let _ = v.send(forward);
                            }
                        }
                        Err(e) => s.errors.push(format!("master message: {e}: {text:.200}")),
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            cmd = rx.recv() => match cmd {
                Some(ToMaster::Text(t)) => { if sink.send(Message::Text(t.into())).await.is_err() { break } }
                Some(ToMaster::Drop) | None => break,
            },
        }
    }
    let mut s = shared.lock().unwrap();
    if s.master.as_ref().is_some_and(|(i, _)| *i == id) {
        s.master = None;
    }
}

#[derive(Default)]
struct Limits {
    sdp: VecDeque<Instant>,
    candidates: VecDeque<Instant>,
}

fn over_limit(q: &mut VecDeque<Instant>, per_sec: usize) -> bool {
    let now = Instant::now();
    while q
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        q.pop_front();
    }
    q.push_back(now);
    q.len() > per_sec
}

/// What KVS checks in a message from the master; returns the recipient and what the
/// viewer receives.
fn check_master_message(text: &str, limits: &mut Limits) -> Result<(String, String), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let action = v["action"].as_str().ok_or("no action")?;
    let to = v["recipientClientId"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("no recipientClientId")?;
    let b64 = v["messagePayload"].as_str().ok_or("no messagePayload")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "payload is not base64")?;
    if raw.len() > 10 * 1024 {
        return Err(format!("payload of {} bytes is over 10 KB", raw.len()));
    }
    let payload: Value = serde_json::from_slice(&raw).map_err(|_| "payload is not JSON")?;
    match action {
        "SDP_ANSWER" => {
            if payload["type"] != "answer" || !payload["sdp"].is_string() {
                return Err("answer payload needs type=answer and sdp".into());
            }
            if over_limit(&mut limits.sdp, 5) {
                return Err("over 5 SDP messages per second".into());
            }
        }
        "ICE_CANDIDATE" => {
            if !payload["candidate"].is_string() {
                return Err("candidate payload needs candidate".into());
            }
            if over_limit(&mut limits.candidates, 20) {
                return Err("over 20 ICE candidates per second".into());
            }
        }
        other => return Err(format!("unknown action {other:?}")),
    }
    let forward = json!({"messageType": action, "messagePayload": b64, "senderClientId": ""});
    Ok((to.to_owned(), forward.to_string()))
}

async fn accept_viewers(listener: TcpListener, shared: Arc<Mutex<Shared>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut client = String::new();
            let read_id = |req: &Request, resp| {
                client = req
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("clientId="))
                    .unwrap_or("anonymous")
                    .to_owned();
                Ok(resp)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, read_id).await else {
                return;
            };
            let (tx, mut rx) = mpsc::unbounded_channel();
            shared.lock().unwrap().viewers.insert(client.clone(), tx);
            let (mut sink, mut stream) = ws.split();
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(Ok(Message::Text(text))) => {
                            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                            let forward = json!({"senderClientId": client,
                                "messageType": v["action"], "messagePayload": v["messagePayload"]});
                            deliver(&mut shared.lock().unwrap(), forward.to_string());
                        }
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => {}
                    },
                    out = rx.recv() => match out {
                        Some(t) => { if sink.send(Message::Text(t.into())).await.is_err() { break } }
                        None => break,
                    },
                }
            }
            shared.lock().unwrap().viewers.remove(&client);
        });
    }
}
