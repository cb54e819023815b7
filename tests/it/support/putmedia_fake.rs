//! A fake of the KVS PutMedia data endpoint, faithful where the daemon could get it wrong:
//!
//! - HTTPS (test CA), `POST /putMedia` with the KVS headers, SigV4 verified (payload hashed
//!   as the empty string), the session token checked against `accept_tokens`; refusals are
//!   HTTP 4xx with `x-amz-ErrorType` and a JSON body, sent before the body is read;
//! - the chunked body is read incrementally (`mkv_reader`) and checked as KVS does: EBML
//!   DocType, 1 ms timecode scale, an H.264 track 1 with an avcC and optionally an AAC
//!   track 2 with its AudioSpecificConfig (what HLS and GetClip play), clusters starting
//!   on a keyframe, well-formed AVCC frames, a frame of every track in every fragment and
//!   blocks in timecode order, timecodes increasing within a connection, ≤ 10 tags per
//!   fragment (a Tags element describes the cluster before it), none named `AWS…` but
//!   KVS's image and notification tags, fragments ≤ 10 s and ≤ 50 MB, one connection per
//!   stream;
//! - acks streamed while the body is read: BUFFERING when a cluster starts, RECEIVED when
//!   it ends (the next cluster or Tags starts, or the body ends), then PERSISTED after
//!   `persist_delay` or ERROR; IDLE every 3 s without data, and the request closed after
//!   30 s without data; every 5th ack split across two writes, and some batched in one;
//! - faults: cut the connection mid-fragment, answer the next fragment with an error,
//!   delay persistence, expire the session token (the open connection is closed then).
//!
//! Every check that fails is recorded in `errors()`, refusals before the body included;
//! tests assert it stays empty. Injected faults record nothing. A fragment is complete only
//! when the next cluster or Tags begins or the body ends: a client that idles after a
//! fragment gets no RECEIVED/PERSISTED for it until then, and a request closed for
//! idleness (or cut) leaves it unacknowledged, to be resent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::mkv_reader::{Block, MkvEvent, MkvReader, Track};
use super::pki::Pki;
use super::sigv4;

/// The tag names starting with "AWS" a producer may write (KVS developer guide: image
/// generation and notifications).
const RESERVED_TAGS: [&str; 3] = [
    "AWS_KINESISVIDEO_IMAGE_GENERATION",
    "AWS_KINESISVIDEO_IMAGE_PREFIX",
    "AWS_KINESISVIDEO_NOTIFICATION",
];

/// Acks are sent this often while no data flows.
pub const IDLE_EVERY: Duration = Duration::from_secs(3);
/// The service closes a request that sent no data for this long.
pub const IDLE_CLOSE: Duration = Duration::from_secs(30);
/// Largest fragment KVS takes.
pub const MAX_FRAGMENT_BYTES: usize = 50 * 1024 * 1024;
/// Longest fragment (first to last frame) the daemon is designed to send.
pub const MAX_FRAGMENT_MS: u64 = 10_000;
/// How long a new connection waits for the stream's previous one to be seen closing
/// before the overlap is recorded (the client closes first, the server notices after).
const OVERLAP_GRACE: Duration = Duration::from_secs(1);
/// How long a batchable ack waits for a second one to share its write.
const BATCH_WAIT: Duration = Duration::from_millis(30);
/// The pause between the two halves of a split ack, so they arrive in two reads.
const SPLIT_GAP: Duration = Duration::from_millis(20);
/// How often fragments waiting for PERSISTED look at `persist_delay` again.
const PERSIST_RECHECK: Duration = Duration::from_millis(100);
/// Time for the last acks to reach the socket before it is closed.
const FLUSH_GRACE: Duration = Duration::from_millis(50);
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
/// When an accepted session token expires; None = a token the service does not know.
pub type TokenExpiry = Arc<dyn Fn(&str) -> Option<SystemTime> + Send + Sync>;

/// A fragment the fake answered PERSISTED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub stream: String,
    /// Which accepted PutMedia request carried it (1, 2, … in `connections()` order).
    pub connection: u64,
    /// The cluster's Timecode: absolute ms.
    pub timecode_ms: u64,
    pub last_frame_ms: u64,
    /// Video frames (track 1).
    pub frames: usize,
    pub keyframes: usize,
    /// AAC frames (track 2).
    pub audio_frames: usize,
    /// The cluster's size on the wire (ID to end), what the 50 MB limit applies to.
    pub bytes: usize,
    pub tags: Vec<(String, String)>,
    pub fragment_number: String,
}

struct Shared {
    streams: HashSet<String>,
    /// Open PutMedia requests per stream.
    open: HashMap<String, u32>,
    persisted: Vec<Fragment>,
    errors: Vec<String>,
    connections: u64,
    acks: HashMap<&'static str, u64>,
    fragments: u64,
    drop_mid: u32,
    fail_next: VecDeque<u32>,
    persist_delay: Duration,
    tokens: TokenExpiry,
    expired_closes: u64,
    bodies: HashMap<u64, Vec<u8>>,
    /// How far the service's clock is ahead of the machine's.
    clock_ahead: Duration,
    calls: HashMap<String, u64>,
}

/// The running fake; its tasks stop with the test's runtime.
#[derive(Clone)]
pub struct FakePutMedia {
    /// `https://127.0.0.1:PORT`: the data endpoint.
    pub url: String,
    region: String,
    shared: Arc<Mutex<Shared>>,
}

impl FakePutMedia {
    pub async fn start(pki: &Pki, region: &str) -> FakePutMedia {
        let tls = pki
            .leaf("kvs-data", &["127.0.0.1", "localhost"])
            .server_config();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        let shared = Shared {
            streams: HashSet::new(),
            open: HashMap::new(),
            persisted: Vec::new(),
            errors: Vec::new(),
            connections: 0,
            acks: HashMap::new(),
            fragments: 0,
            drop_mid: 0,
            fail_next: VecDeque::new(),
            persist_delay: Duration::ZERO,
            tokens: Arc::new(move |t| (t == sigv4::SESSION_TOKEN).then_some(far)),
            expired_closes: 0,
            bodies: HashMap::new(),
            clock_ahead: Duration::ZERO,
            calls: HashMap::new(),
        };
        let fake = FakePutMedia {
            url: format!("https://{}", listener.local_addr().unwrap()),
            region: region.to_owned(),
            shared: Arc::new(Mutex::new(shared)),
        };
        tokio::spawn(accept(listener, tls, fake.clone()));
        fake
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        f(&mut self.shared.lock().unwrap())
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Records a problem the daemon caused (other calls than PutMedia).
    pub fn record_error(&self, error: String) {
        self.record(error);
    }

    pub fn count_call(&self, op: &str) {
        self.with(|s| *s.calls.entry(op.to_owned()).or_default() += 1);
    }

    /// Calls other than PutMedia answered, by operation.
    pub fn calls(&self, op: &str) -> u64 {
        self.with(|s| s.calls.get(op).copied().unwrap_or(0))
    }

    fn record(&self, error: String) {
        self.with(|s| s.errors.push(error));
    }

    /// Creates the stream (PutMedia to any other name gets 404).
    pub fn add_stream(&self, name: &str) {
        self.with(|s| s.streams.insert(name.to_owned()));
    }

    /// Fragments answered PERSISTED, in that order, resent duplicates included.
    pub fn persisted(&self) -> Vec<Fragment> {
        self.with(|s| s.persisted.clone())
    }

    pub fn errors(&self) -> Vec<String> {
        self.with(|s| s.errors.clone())
    }

    /// PutMedia requests accepted (HTTP 200), reconnects included.
    pub fn connections(&self) -> u64 {
        self.with(|s| s.connections)
    }

    /// Acks written so far of one `EventType` (BUFFERING, RECEIVED, PERSISTED, ERROR, IDLE).
    pub fn acks_sent(&self, kind: &str) -> u64 {
        self.with(|s| s.acks.get(kind).copied().unwrap_or(0))
    }

    /// Connections closed because their session token expired while they streamed.
    pub fn expired_closes(&self) -> u64 {
        self.with(|s| s.expired_closes)
    }

    /// The body bytes received on accepted request `connection` (for mkvinfo or a decoder).
    pub fn body(&self, connection: u64) -> Vec<u8> {
        self.with(|s| s.bodies.get(&connection).cloned().unwrap_or_default())
    }

    /// The next `n` clusters that start are cut: the TCP connection is closed once the
    /// cluster has begun, with no ack for it and no end to the response.
    pub fn drop_mid_fragment(&self, n: u32) {
        self.with(|s| s.drop_mid += n);
    }

    /// The next complete, valid fragment is answered ERROR `code` instead of PERSISTED;
    /// the connection stays open. Calls queue up.
    pub fn fail_next(&self, code: u32) {
        self.with(|s| s.fail_next.push_back(code));
    }

    /// Time between RECEIVED and PERSISTED.
    pub fn set_persist_delay(&self, delay: Duration) {
        self.with(|s| s.persist_delay = delay);
    }

    /// Which session tokens are accepted, and until when (default: `sigv4::SESSION_TOKEN`,
    /// never expiring). `FakeIot::token_expiry()` plugs in here.
    pub fn accept_tokens(&self, f: TokenExpiry) {
        self.with(|s| s.tokens = f);
    }

    /// Runs the service's clock `ahead` of this machine's: its `Date` headers say so, and
    /// like AWS it refuses a signature more than 15 minutes off its clock.
    pub fn set_clock_ahead(&self, ahead: Duration) {
        self.with(|s| s.clock_ahead = ahead);
    }

    fn now(&self) -> SystemTime {
        SystemTime::now() + self.with(|s| s.clock_ahead)
    }

    /// Waits until `f` holds, polling.
    pub async fn wait(&self, limit: Duration, f: impl Fn(&FakePutMedia) -> bool) -> bool {
        super::poll_until(limit, || f(self)).await
    }
}

async fn accept(listener: TcpListener, tls: Arc<rustls::ServerConfig>, fake: FakePutMedia) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, fake) = (acceptor.clone(), fake.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                fake.record("PutMedia: TLS handshake failed".into());
                return;
            };
            // Cancelled to close the connection abruptly: no TLS close, no response end.
            let kill = CancellationToken::new();
            let service = hyper::service::service_fn({
                let (fake, kill) = (fake.clone(), kill.clone());
                move |req: Request<Incoming>| {
                    let (fake, kill) = (fake.clone(), kill.clone());
                    async move { Ok::<_, Infallible>(fake.answer(req, kill).await) }
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                biased;
                _ = kill.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

fn request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn refusal(status: u16, kind: &str, message: &str, now: SystemTime) -> Response<Body> {
    let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
    let date = chrono::DateTime::<chrono::Utc>::from(now)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    Response::builder()
        .status(status)
        .header("date", date)
        .header("x-amz-ErrorType", kind)
        .header("x-amzn-ErrorType", kind)
        .header("x-amzn-RequestId", request_id())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

impl FakePutMedia {
    async fn answer(&self, req: Request<Incoming>, kill: CancellationToken) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts.uri.path() == "/getImages" {
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return super::get_images::get_images(self, &parts, &body);
        }
        let (stream, expiry) = match self.check_request(&parts) {
            Ok(ok) => ok,
            Err((status, kind, why)) => {
                self.record(format!("PutMedia refused ({status} {kind}): {why}"));
                return refusal(status, kind, &why, self.now());
            }
        };
        self.claim(&stream).await;
        let open = OpenGuard {
            shared: Arc::clone(&self.shared),
            stream: stream.clone(),
        };
        let connection = self.with(|s| {
            s.connections += 1;
            s.bodies.insert(s.connections, Vec::new());
            s.connections
        });
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let (out, out_rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(write_acks(ack_rx, out, kill, self.clone()));
        let upload = Upload {
            fake: self.clone(),
            session: Session::new(stream, connection),
            reader: MkvReader::new(),
            acks,
            queue: VecDeque::new(),
            _open: open,
        };
        tokio::spawn(upload.run(body, expiry));
        let chunks = futures_util::stream::unfold(out_rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("x-amzn-RequestId", request_id())
            .body(StreamBody::new(chunks).boxed())
            .unwrap()
    }

    /// What the service checks before the body: `(stream, token expiry)` or a refusal.
    fn check_request(
        &self,
        parts: &http::request::Parts,
    ) -> Result<(String, SystemTime), (u16, &'static str, String)> {
        if parts.method != http::Method::POST || parts.uri.path() != "/putMedia" {
            let why = format!("{} {} is not POST /putMedia", parts.method, parts.uri);
            return Err((404, "UnknownOperationException", why));
        }
        // An origin server gets the origin form (RFC 9112 §3.2.1); the absolute form
        // (`POST https://host/putMedia`) is for proxies.
        if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
            let why = format!(
                "request target {} is in absolute form; send /putMedia",
                parts.uri
            );
            return Err((400, "InvalidArgumentException", why));
        }
        let h = &parts.headers;
        let stream =
            check_headers(h, &self.region).map_err(|why| (400, "InvalidArgumentException", why))?;
        let token = h
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let tokens = self.with(|s| Arc::clone(&s.tokens));
        let expiry = tokens(token).ok_or_else(|| {
            let why = format!("unknown session token {token:?}");
            (403, "UnrecognizedClientException", why)
        })?;
        if expiry <= SystemTime::now() {
            let why = "the security token included in the request is expired".to_owned();
            return Err((403, "ExpiredTokenException", why));
        }
        // SigV4 allows 15 minutes between the signature's time and the service's clock.
        let signed = h
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%SZ").ok())
            .map(|t| SystemTime::from(t.and_utc()));
        let off = signed.map(|t| {
            let now = self.now();
            now.duration_since(t).unwrap_or_else(|e| e.duration())
        });
        if off.is_some_and(|off| off > Duration::from_secs(15 * 60)) {
            let why = "Signature expired: the request's x-amz-date is more than 15 minutes \
                       from the service's time"
                .to_owned();
            return Err((403, "InvalidSignatureException", why));
        }
        let query = parts.uri.query().unwrap_or("");
        sigv4::verify_headers(
            "POST",
            "/putMedia",
            query,
            h,
            b"",
            (&self.region, "kinesisvideo"),
            self.now().into(),
        )
        .map_err(|why| (403, "AccessDeniedException", why))?;
        if !self.with(|s| s.streams.contains(&stream)) {
            let why = format!("stream {stream:?} does not exist");
            return Err((404, "ResourceNotFoundException", why));
        }
        Ok((stream, expiry))
    }

    /// Marks a connection open on `stream`; a second one at the same time is recorded.
    async fn claim(&self, stream: &str) {
        let until = Instant::now() + OVERLAP_GRACE;
        loop {
            let done = self.with(|s| {
                let open = s.open.entry(stream.to_owned()).or_default();
                if *open > 0 && Instant::now() < until {
                    return false;
                }
                if *open > 0 {
                    s.errors
                        .push(format!("two connections for stream {stream}"));
                }
                *open += 1;
                true
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks the KVS headers; returns the stream name.
fn check_headers(h: &http::HeaderMap, region: &str) -> Result<String, String> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let mut bad = Vec::new();
    if get("host").is_none() {
        bad.push("no host header".to_owned());
    }
    let stream = match (get("x-amzn-stream-name"), get("x-amzn-stream-arn")) {
        (Some(name), None) => name.to_owned(),
        (None, Some(arn)) => {
            let prefix = format!("arn:aws:kinesisvideo:{region}:");
            let name = arn
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split('/').nth(1))
                .filter(|_| arn.contains(":stream/"));
            match name {
                Some(n) => n.to_owned(),
                None => return Err(format!("x-amzn-stream-arn {arn:?} is not a stream ARN")),
            }
        }
        (Some(_), Some(_)) => return Err("both x-amzn-stream-name and -arn".into()),
        (None, None) => return Err("no x-amzn-stream-name or x-amzn-stream-arn".into()),
    };
    if get("x-amzn-fragment-timecode-type") != Some("ABSOLUTE") {
        bad.push("x-amzn-fragment-timecode-type is not ABSOLUTE".into());
    }
    let start = get("x-amzn-producer-start-timestamp").unwrap_or_default();
    if !is_producer_timestamp(start) {
        bad.push(format!(
            "x-amzn-producer-start-timestamp {start:?} is not <secs>.<millis>"
        ));
    }
    if get("x-amzn-fragment-acknowledgment-required") != Some("1") {
        bad.push("x-amzn-fragment-acknowledgment-required is not 1".into());
    }
    if !get("transfer-encoding").is_some_and(|v| v.contains("chunked"))
        || h.contains_key("content-length")
    {
        bad.push("the body is not chunked".into());
    }
    if get("x-amz-content-sha256") != Some(EMPTY_SHA256) {
        bad.push("x-amz-content-sha256 is not the hash of the empty string".into());
    }
    if bad.is_empty() {
        Ok(stream)
    } else {
        Err(bad.join("; "))
    }
}

/// `<secs>.<millis>`, seconds since the epoch (not milliseconds by mistake).
fn is_producer_timestamp(v: &str) -> bool {
    let Some((secs, millis)) = v.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(secs)
        && millis.len() == 3
        && digits(millis)
        && secs
            .parse::<u64>()
            .is_ok_and(|s| (1_000_000_000..10_000_000_000).contains(&s))
}

/// Un-marks the stream's open connection when the request ends, however it ends.
struct OpenGuard {
    shared: Arc<Mutex<Shared>>,
    stream: String,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.lock() {
            if let Some(n) = s.open.get_mut(&self.stream) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

/// What goes to the ack writer, in order.
enum ToWriter {
    Ack(&'static str, String),
    /// End the response; `close` also closes the connection (the body was not finished).
    End {
        close: bool,
    },
    /// Close the connection abruptly once the acks before it are out.
    Kill,
}

/// Writes acks to the response: every 5th split in two writes, some batched in one.
async fn write_acks(
    mut rx: mpsc::UnboundedReceiver<ToWriter>,
    out: mpsc::UnboundedSender<Bytes>,
    kill: CancellationToken,
    fake: FakePutMedia,
) {
    let count = |kind: &'static str| fake.with(|s| *s.acks.entry(kind).or_default() += 1);
    let mut n = 0u64;
    let mut next = None;
    loop {
        let msg = match next.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        match msg {
            ToWriter::Ack(kind, mut text) => {
                n += 1;
                count(kind);
                if n.is_multiple_of(5) {
                    let (a, b) = text.split_at(text.len() / 2);
                    let _ = out.send(Bytes::copy_from_slice(a.as_bytes()));
                    tokio::time::sleep(SPLIT_GAP).await;
                    let _ = out.send(Bytes::copy_from_slice(b.as_bytes()));
                    continue;
                }
                if n % 5 == 2 {
                    match tokio::time::timeout(BATCH_WAIT, rx.recv()).await {
                        Ok(Some(ToWriter::Ack(k, more))) => {
                            n += 1;
                            count(k);
                            text.push_str(&more);
                        }
                        Ok(Some(other)) => next = Some(other),
                        Ok(None) | Err(_) => {}
                    }
                }
                let _ = out.send(Bytes::from(text));
            }
            ToWriter::End { close } => {
                drop(out);
                if close {
                    tokio::time::sleep(FLUSH_GRACE * 4).await;
                    kill.cancel();
                }
                return;
            }
            ToWriter::Kill => {
                tokio::time::sleep(FLUSH_GRACE).await;
                // The connection task sees this before the response stream's end.
                kill.cancel();
                return;
            }
        }
    }
}

fn ack(kind: &str, timecode: u64, number: &str) -> String {
    format!("{{\"EventType\":\"{kind}\",\"FragmentTimecode\":{timecode},\"FragmentNumber\":\"{number}\"}}\n")
}

fn error_ack(timecode: u64, number: &str, code: u32) -> String {
    format!(
        "{{\"EventType\":\"ERROR\",\"FragmentTimecode\":{timecode},\"FragmentNumber\":\"{number}\",\"ErrorId\":{code},\"ErrorCode\":\"{}\"}}\n",
        error_code(code)
    )
}

/// The service's name for an ErrorId.
pub fn error_code(id: u32) -> &'static str {
    match id {
        4000 => "STREAM_READ_ERROR",
        4001 => "MAX_FRAGMENT_SIZE_REACHED",
        4002 => "MAX_FRAGMENT_DURATION_REACHED",
        4003 => "MAX_CONNECTION_DURATION_REACHED",
        4004 => "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS",
        4005 => "MORE_THAN_ALLOWED_TRACKS_FOUND",
        4006 => "INVALID_MKV_DATA",
        4007 => "INVALID_PRODUCER_TIMESTAMP",
        4008 => "STREAM_NOT_ACTIVE",
        4009 => "FRAGMENT_METADATA_LIMIT_REACHED",
        4010 => "TRACK_NUMBER_MISMATCH",
        4011 => "FRAMES_MISSING_FOR_TRACK",
        5001 => "ARCHIVAL_ERROR",
        _ => "INTERNAL_ERROR",
    }
}

/// A fragment's outcome once complete: None = PERSISTED, or the ErrorId.
type Outcome = Option<u32>;

/// One accepted PutMedia request: reads the body, acks, persists.
struct Upload {
    fake: FakePutMedia,
    session: Session,
    reader: MkvReader,
    acks: mpsc::UnboundedSender<ToWriter>,
    /// RECEIVED fragments (and when) waiting for their PERSISTED (or ERROR), in order.
    queue: VecDeque<(tokio::time::Instant, Fragment, Outcome)>,
    _open: OpenGuard,
}

/// Whether the request goes on after a step.
#[derive(PartialEq)]
enum Flow {
    Go,
    Stop,
}

impl Upload {
    async fn run(mut self, mut body: Incoming, expiry: SystemTime) {
        use tokio::time::{sleep_until, Instant};
        let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
        let expires = Instant::now() + left.min(Duration::from_secs(86_400 * 365));
        let mut last_data = Instant::now();
        let mut last_ack = last_data;
        let mut eof = false;
        loop {
            if eof && self.queue.is_empty() {
                let _ = self.acks.send(ToWriter::End { close: false });
                return;
            }
            // The delay may change meanwhile (a test lets KVS catch up): look again soon.
            let delay = self.fake.with(|s| s.persist_delay);
            let persist_at = self
                .queue
                .front()
                .map(|q| (q.0 + delay).min(Instant::now() + PERSIST_RECHECK));
            let idle_at = last_data.max(last_ack) + IDLE_EVERY;
            tokio::select! {
                biased;
                _ = sleep_until(expires) => {
                    self.fake.with(|s| s.expired_closes += 1);
                    let _ = self.acks.send(ToWriter::Kill);
                    return;
                }
                _ = sleep_until(persist_at.unwrap_or(expires)), if persist_at.is_some() => {
                    self.persist_due();
                }
                frame = body.frame(), if !eof => {
                    let flow = match frame {
                        Some(Ok(f)) => match f.into_data() {
                            Ok(data) => {
                                last_data = Instant::now();
                                self.on_data(&data)
                            }
                            Err(_) => Flow::Go, // trailers
                        },
                        // The client went away (or the connection broke) mid-body.
                        Some(Err(_)) => return,
                        None => {
                            eof = true;
                            self.on_eof()
                        }
                    };
                    if flow == Flow::Stop {
                        return;
                    }
                }
                _ = sleep_until(last_data + IDLE_CLOSE), if !eof => {
                    // Fragments not yet persisted are not acked: the client resends them.
                    let _ = self.acks.send(ToWriter::End { close: true });
                    return;
                }
                _ = sleep_until(idle_at), if !eof => {
                    last_ack = Instant::now();
                    let _ = self.acks.send(ToWriter::Ack("IDLE", "{\"EventType\":\"IDLE\"}\n".into()));
                }
            }
        }
    }

    fn on_data(&mut self, data: &[u8]) -> Flow {
        let connection = self.session.connection;
        self.fake.with(|s| {
            if let Some(b) = s.bodies.get_mut(&connection) {
                b.extend_from_slice(data);
            }
        });
        let events = self.reader.push(data);
        self.apply(events)
    }

    fn on_eof(&mut self) -> Flow {
        let events = self.reader.finish();
        self.apply(events)
    }

    fn apply(&mut self, events: Result<Vec<MkvEvent>, String>) -> Flow {
        let events = match events {
            Ok(e) => e,
            Err(why) => return self.unreadable(why),
        };
        for ev in events {
            if matches!(ev, MkvEvent::ClusterStart { .. }) && self.take_drop() {
                let _ = self.acks.send(ToWriter::Kill);
                return Flow::Stop;
            }
            let steps = {
                let fake = &self.fake;
                let mut number = || fake.with(next_fragment_number);
                self.session.on_event(ev, &mut number)
            };
            for step in steps {
                self.on_step(step);
            }
        }
        match self.reader.failed() {
            Some(why) => self.unreadable(why.to_owned()),
            None => Flow::Go,
        }
    }

    fn take_drop(&self) -> bool {
        self.fake.with(|s| {
            let cut = s.drop_mid > 0;
            s.drop_mid = s.drop_mid.saturating_sub(1);
            cut
        })
    }

    fn on_step(&mut self, step: Step) {
        match step {
            Step::Violation(why) => {
                let s = &self.session;
                let e = format!("{} connection {}: {why}", s.stream, s.connection);
                self.fake.record(e);
            }
            Step::Tagged { timecode, tags } => {
                let connection = self.session.connection;
                let this = |f: &Fragment| f.connection == connection && f.timecode_ms == timecode;
                if let Some(q) = self.queue.iter_mut().rev().find(|q| this(&q.1)) {
                    q.1.tags = tags;
                } else {
                    self.fake.with(|s| {
                        if let Some(f) = s.persisted.iter_mut().rev().find(|f| this(f)) {
                            f.tags = tags;
                        }
                    });
                }
            }
            Step::Started { timecode, number } => {
                self.send("BUFFERING", ack("BUFFERING", timecode, &number));
            }
            Step::Completed { fragment, error } => {
                let line = ack("RECEIVED", fragment.timecode_ms, &fragment.fragment_number);
                self.send("RECEIVED", line);
                let outcome = error.or_else(|| self.fake.with(|s| s.fail_next.pop_front()));
                let now = tokio::time::Instant::now();
                self.queue.push_back((now, fragment, outcome));
                self.persist_due();
            }
        }
    }

    /// Answers the fragments received at least `persist_delay` ago, in order.
    fn persist_due(&mut self) {
        let delay = self.fake.with(|s| s.persist_delay);
        let now = tokio::time::Instant::now();
        while self.queue.front().is_some_and(|q| q.0 + delay <= now) {
            self.persist_front();
        }
    }

    fn persist_front(&mut self) {
        let Some((_, fragment, outcome)) = self.queue.pop_front() else {
            return;
        };
        let (tc, number) = (fragment.timecode_ms, fragment.fragment_number.clone());
        match outcome {
            Some(code) => self.send("ERROR", error_ack(tc, &number, code)),
            None => {
                self.fake.with(|s| s.persisted.push(fragment));
                self.send("PERSISTED", ack("PERSISTED", tc, &number));
            }
        }
    }

    /// The body cannot be read on: the open fragment fails with 4006, the request ends.
    fn unreadable(&mut self, why: String) -> Flow {
        self.on_step(Step::Violation(format!("unreadable MKV: {why}")));
        self.persist_due();
        let line = match self.session.abandon() {
            Some((tc, number)) => error_ack(tc, &number, 4006),
            None => {
                "{\"EventType\":\"ERROR\",\"ErrorId\":4006,\"ErrorCode\":\"INVALID_MKV_DATA\"}\n"
                    .to_owned()
            }
        };
        self.send("ERROR", line);
        let _ = self.acks.send(ToWriter::End { close: true });
        Flow::Stop
    }

    fn send(&self, kind: &'static str, line: String) {
        let _ = self.acks.send(ToWriter::Ack(kind, line));
    }
}

/// The next fragment number: 48 decimal digits, increasing.
fn next_fragment_number(s: &mut Shared) -> String {
    s.fragments += 1;
    format!(
        "91343852333{:037}",
        181_432_392_682_062u128 * 1_000_000 + u128::from(s.fragments)
    )
}

/// What the checks of one connection's MKV decide.
enum Step {
    /// A cluster began: BUFFERING.
    Started { timecode: u64, number: String },
    /// A cluster ended: RECEIVED, then PERSISTED, or ERROR with the ErrorId.
    Completed {
        fragment: Fragment,
        error: Option<u32>,
    },
    /// Tags arrived for the cluster at `timecode`: its metadata so far.
    Tagged {
        timecode: u64,
        tags: Vec<(String, String)>,
    },
    /// Something KVS would reject or the daemon must not send.
    Violation(String),
}

/// The open cluster.
struct Open {
    fragment: Fragment,
    error: Option<u32>,
}

/// The MKV checks of one PutMedia connection (pure: events in, steps out).
struct Session {
    stream: String,
    connection: u64,
    /// Why the header makes every fragment invalid (reported once).
    header_problem: Option<String>,
    tracks_seen: bool,
    /// The header declares track 2 (AAC).
    audio: bool,
    /// Time of the last block in the open cluster.
    last_block_ms: Option<i64>,
    /// The last frame of the previous accepted fragment on this connection.
    last_frame_ms: Option<u64>,
    /// The metadata of the last cluster so far (Tags elements after it).
    tags: Vec<(String, String)>,
    /// The last cluster's timecode, which Tags describe.
    last_timecode: Option<u64>,
    open: Option<Open>,
}

impl Session {
    fn new(stream: String, connection: u64) -> Self {
        Self {
            stream,
            connection,
            header_problem: None,
            tracks_seen: false,
            audio: false,
            last_block_ms: None,
            last_frame_ms: None,
            tags: Vec::new(),
            last_timecode: None,
            open: None,
        }
    }

    fn on_event(&mut self, ev: MkvEvent, number: &mut dyn FnMut() -> String) -> Vec<Step> {
        let mut steps = Vec::new();
        match ev {
            MkvEvent::EbmlHeader { doc_type, .. } => {
                if doc_type != "matroska" {
                    self.header_problem(&mut steps, format!("DocType {doc_type:?}"));
                }
            }
            MkvEvent::SegmentStart { .. } => {}
            MkvEvent::Info { timecode_scale } => {
                let scale = timecode_scale.unwrap_or(1_000_000);
                if scale != 1_000_000 {
                    self.header_problem(&mut steps, format!("TimecodeScale {scale}, not 1 ms"));
                }
            }
            MkvEvent::Tracks(tracks) => {
                self.tracks_seen = true;
                self.audio = tracks.len() == 2;
                if let Err(why) = check_tracks(&tracks) {
                    self.header_problem(&mut steps, why);
                }
            }
            // A Tags element is the metadata of the cluster before it.
            MkvEvent::Tags(tags) => self.tagged(tags, &mut steps),
            MkvEvent::ClusterStart { timecode } => self.start(timecode, number(), &mut steps),
            MkvEvent::Block(b) => self.block(b, &mut steps),
            MkvEvent::ClusterEnd { bytes } => self.end(bytes, &mut steps),
        }
        steps
    }

    fn header_problem(&mut self, steps: &mut Vec<Step>, why: String) {
        steps.push(Step::Violation(format!("bad header: {why}")));
        self.header_problem.get_or_insert(why);
    }

    fn flag(&mut self, steps: &mut Vec<Step>, code: u32, why: String) {
        let Some(open) = &mut self.open else { return };
        let tc = open.fragment.timecode_ms;
        steps.push(Step::Violation(format!("fragment {tc}: {code}: {why}")));
        open.error.get_or_insert(code);
    }

    fn tagged(&mut self, tags: Vec<(String, String)>, steps: &mut Vec<Step>) {
        self.tags.extend(tags);
        let reserved = |n: &str| RESERVED_TAGS.contains(&n) || !n.starts_with("AWS");
        if self.tags.len() > 10 || !self.tags.iter().all(|(n, _)| reserved(n)) {
            let why = format!(
                "over 10 tags, or a tag named AWS… of KVS's own: {:?}",
                self.tags
            );
            steps.push(Step::Violation(why));
        }
        match self.last_timecode {
            Some(timecode) => steps.push(Step::Tagged {
                timecode,
                tags: self.tags.clone(),
            }),
            None => steps.push(Step::Violation("Tags before any cluster".into())),
        }
    }

    fn start(&mut self, timecode: u64, number: String, steps: &mut Vec<Step>) {
        self.tags.clear();
        self.last_timecode = Some(timecode);
        self.open = Some(Open {
            fragment: Fragment {
                stream: self.stream.clone(),
                connection: self.connection,
                timecode_ms: timecode,
                last_frame_ms: timecode,
                frames: 0,
                keyframes: 0,
                audio_frames: 0,
                bytes: 0,
                tags: Vec::new(),
                fragment_number: number.clone(),
            },
            error: None,
        });
        steps.push(Step::Started { timecode, number });
        if !self.tracks_seen {
            self.flag(steps, 4006, "a Cluster before Tracks".into());
        } else if self.header_problem.is_some() {
            self.open.as_mut().unwrap().error = Some(4006);
        }
        if let Some(last) = self.last_frame_ms.filter(|last| timecode <= *last) {
            let why = format!("timecode {timecode} is not after the last frame {last}");
            self.flag(steps, 4004, why);
        }
        if timecode < 1_000_000_000_000 {
            self.flag(
                steps,
                4006,
                format!("timecode {timecode} is not absolute ms"),
            );
        }
    }

    fn block(&mut self, b: Block, steps: &mut Vec<Step>) {
        let Some(open) = &mut self.open else { return };
        let first = open.fragment.frames + open.fragment.audio_frames == 0;
        let cluster_ms = open.fragment.timecode_ms;
        let time = cluster_ms as i64 + i64::from(b.relative_timecode);
        let backwards = self.last_block_ms.is_some_and(|last| time < last);
        self.last_block_ms = Some(time);
        open.fragment.last_frame_ms = open.fragment.last_frame_ms.max(time.max(0) as u64);
        if b.track == 2 && self.audio {
            open.fragment.audio_frames += 1;
        } else {
            open.fragment.frames += 1;
            open.fragment.keyframes += usize::from(b.keyframe);
        }
        if first && !(b.keyframe && b.track == 1) {
            let why = "the cluster does not start with a keyframe on track 1";
            self.flag(steps, 4006, why.into());
        } else if b.track == 2 && self.audio {
            if b.data.is_empty() {
                self.flag(steps, 4006, "an empty AAC block".into());
            } else if time < cluster_ms as i64 {
                self.flag(
                    steps,
                    4006,
                    format!("an AAC block before its cluster ({time})"),
                );
            }
        } else if b.track != 1 {
            self.flag(steps, 4010, format!("a block on track {}", b.track));
        } else if let Err(why) = check_frame(&b.data, b.keyframe) {
            self.flag(steps, 4006, why);
        }
        if backwards {
            // Accepted by the service, but players need blocks in time order.
            steps.push(Step::Violation(format!(
                "fragment {cluster_ms}: a block at {time} after a later one"
            )));
        }
    }

    fn end(&mut self, bytes: usize, steps: &mut Vec<Step>) {
        let Some(open) = &mut self.open else {
            steps.push(Step::Violation("a Cluster without a Timecode".into()));
            return;
        };
        open.fragment.bytes = bytes;
        self.last_block_ms = None;
        let f = open.fragment.clone();
        if f.frames == 0 {
            self.flag(steps, 4011, "a cluster without frames".into());
        }
        if self.audio && f.audio_frames == 0 {
            // HLS and GetClip need a frame of every track in every fragment.
            steps.push(Step::Violation(format!(
                "fragment {}: no frame on track 2 (AAC)",
                f.timecode_ms
            )));
        }
        if bytes > MAX_FRAGMENT_BYTES {
            self.flag(steps, 4001, format!("{bytes} bytes"));
        }
        let span = f.last_frame_ms - f.timecode_ms;
        if span > MAX_FRAGMENT_MS {
            self.flag(steps, 4002, format!("spans {span} ms"));
        }
        let open = self.open.take().unwrap();
        if open.error.is_none() {
            self.last_frame_ms = Some(f.last_frame_ms);
        }
        steps.push(Step::Completed {
            fragment: open.fragment,
            error: open.error,
        });
    }

    /// Drops the open cluster (the body became unreadable): its timecode and number.
    fn abandon(&mut self) -> Option<(u64, String)> {
        self.open
            .take()
            .map(|o| (o.fragment.timecode_ms, o.fragment.fragment_number))
    }
}

/// An H.264 track 1 and optionally an AAC track 2, as KVS and its HLS/MP4 playback
/// need them.
fn check_tracks(tracks: &[Track]) -> Result<(), String> {
    let (t, audio) = match tracks {
        [t] => (t, None),
        [t, a] => (t, Some(a)),
        _ => return Err(format!("{} tracks, not one or two", tracks.len())),
    };
    if t.number != 1 || t.kind != 1 {
        return Err(format!(
            "track number {} type {}, not 1 and 1 (video)",
            t.number, t.kind
        ));
    }
    if t.codec_id != "V_MPEG4/ISO/AVC" {
        return Err(format!("CodecID {:?}", t.codec_id));
    }
    if t.width == 0 || t.height == 0 {
        return Err(format!("picture size {}x{}", t.width, t.height));
    }
    let private = t.codec_private.as_deref().ok_or("no CodecPrivate")?;
    check_avcc_config(private).map_err(|e| format!("CodecPrivate: {e}"))?;
    if let Some(a) = audio {
        check_aac_track(a)?;
    }
    Ok(())
}

/// Track 2: AAC-LC with an AudioSpecificConfig that agrees with the Audio element.
fn check_aac_track(a: &Track) -> Result<(), String> {
    if a.number != 2 || a.kind != 2 {
        return Err(format!(
            "second track number {} type {}, not 2 and 2 (audio)",
            a.number, a.kind
        ));
    }
    if a.codec_id != "A_AAC" {
        return Err(format!("second track CodecID {:?}, not A_AAC", a.codec_id));
    }
    let asc = a
        .codec_private
        .as_deref()
        .ok_or("the AAC track has no CodecPrivate (AudioSpecificConfig)")?;
    let [b0, b1, ..] = asc else {
        return Err("AudioSpecificConfig shorter than 2 bytes".into());
    };
    let object_type = b0 >> 3;
    let freq_index = ((b0 & 0x07) << 1) | (b1 >> 7);
    let channels = u64::from((b1 >> 3) & 0x0F);
    const RATES: [u64; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    if object_type != 2 {
        return Err(format!("AAC object type {object_type}, not 2 (LC)"));
    }
    let rate = RATES
        .get(usize::from(freq_index))
        .ok_or(format!("AAC frequency index {freq_index}"))?;
    if a.rate != *rate || a.channels != channels {
        return Err(format!(
            "Audio says {} Hz, {} channel(s); the AudioSpecificConfig {rate} Hz, {channels}",
            a.rate, a.channels
        ));
    }
    Ok(())
}

/// An AVCDecoderConfigurationRecord with 4-byte NAL lengths, one SPS and one PPS.
pub fn check_avcc_config(c: &[u8]) -> Result<(), String> {
    let cut = || "cut short".to_owned();
    if c.len() < 7 || c[0] != 1 {
        return Err("not an avcC (version 1)".into());
    }
    if c[4] & 0x03 != 3 {
        return Err(format!("NAL length size {}, not 4", (c[4] & 0x03) + 1));
    }
    if c[5] & 0x1F != 1 {
        return Err(format!("{} SPS, not 1", c[5] & 0x1F));
    }
    let sps_len = usize::from(u16::from_be_bytes([c[6], c[7]]));
    let sps = c.get(8..8 + sps_len).ok_or_else(cut)?;
    if sps.len() < 4 || sps[0] & 0x1F != 7 || sps[1..4] != c[1..4] {
        return Err("the SPS is not an SPS matching the profile and level".into());
    }
    let p = 8 + sps_len;
    if c.get(p).map(|n| n & 0x1F) != Some(1) {
        return Err("not exactly 1 PPS".into());
    }
    let pps_len = usize::from(u16::from_be_bytes([
        *c.get(p + 1).ok_or_else(cut)?,
        *c.get(p + 2).ok_or_else(cut)?,
    ]));
    let pps = c.get(p + 3..p + 3 + pps_len).ok_or_else(cut)?;
    if pps.first().map(|b| b & 0x1F) != Some(8) {
        return Err("the PPS is not a PPS".into());
    }
    // High profiles append chroma/bit-depth fields; the others end here.
    let high = matches!(c[1], 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128);
    if p + 3 + pps_len != c.len() && !high {
        return Err("bytes after the PPS".into());
    }
    Ok(())
}

/// An AVCC access unit: 4-byte lengths that add up exactly, an IDR exactly on keyframes.
pub fn check_frame(data: &[u8], keyframe: bool) -> Result<(), String> {
    let mut rest = data;
    let mut idr = false;
    if rest.is_empty() {
        return Err("an empty frame".into());
    }
    while !rest.is_empty() {
        let Some(len) = rest.get(..4) else {
            return Err(format!(
                "{} stray bytes after the last NAL unit",
                rest.len()
            ));
        };
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        let nal = rest
            .get(4..4 + len)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("NAL length {len} with {} bytes left", rest.len() - 4))?;
        if nal[0] & 0x80 != 0 {
            return Err("a NAL unit with the forbidden bit set".into());
        }
        idr |= nal[0] & 0x1F == 5;
        rest = &rest[4 + len..];
    }
    match (keyframe, idr) {
        (true, false) => Err("a keyframe without an IDR slice".into()),
        (false, true) => Err("an IDR slice in a block not flagged keyframe".into()),
        _ => Ok(()),
    }
}
