//! The PutMedia fake itself, driven by a hand-rolled client (hyper over rustls, headers
//! signed with aws-sigv4): good fragments are persisted with increasing fragment numbers;
//! a bad signature, an unknown token or stream is refused before the body; a cluster not
//! starting on a keyframe gets 4006 and a repeated timecode 4004; injected faults (a cut
//! mid-fragment, an error for the next fragment, an expiring token) behave as documented.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::support::mkv_reader::avc;
use crate::support::pki::Pki;
use crate::support::putmedia_fake::FakePutMedia;
use crate::support::sigv4::{ACCESS_KEY, SECRET_KEY, SESSION_TOKEN};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use edgecam::upload::mkv::{self, Frame, TrackInfo};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame as BodyFrame;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::timeout;

const REGION: &str = "eu-west-1";
const STREAM: &str = "porch";
/// 2025-11-21T04:40:00Z, in ms.
const T0: u64 = 1_763_700_000_000;
const WAIT: Duration = Duration::from_secs(3);

/// The response side of an open PutMedia request.
enum Reply {
    /// One ack line, parsed.
    Ack(Value),
    /// A read that ended inside a line, or that held more than one line.
    Split,
    Batched,
    /// The response ended cleanly (`true`) or the connection broke (`false`).
    Closed(bool),
}

struct Client {
    status: u16,
    error_type: String,
    body: Option<mpsc::Sender<Bytes>>,
    replies: mpsc::UnboundedReceiver<Reply>,
}

impl Client {
    async fn send(&self, bytes: Vec<u8>) {
        let tx = self.body.as_ref().expect("body open");
        tx.send(Bytes::from(bytes)).await.expect("connection open");
    }

    /// Ends the body (the terminating chunk).
    fn finish(&mut self) {
        self.body = None;
    }

    async fn next(&mut self) -> Reply {
        timeout(WAIT, self.replies.recv())
            .await
            .expect("a reply in time")
            .unwrap_or(Reply::Closed(false))
    }

    /// The next ack, skipping IDLE.
    async fn ack(&mut self) -> Value {
        loop {
            match self.next().await {
                Reply::Ack(v) if v["EventType"] == "IDLE" => continue,
                Reply::Ack(v) => return v,
                Reply::Split | Reply::Batched => {}
                Reply::Closed(clean) => panic!("closed (clean: {clean}) while waiting for an ack"),
            }
        }
    }

    /// The next ack, IDLE included.
    async fn ack_or_idle(&mut self) -> Value {
        loop {
            match self.next().await {
                Reply::Ack(v) => return v,
                Reply::Split | Reply::Batched => {}
                Reply::Closed(clean) => panic!("closed (clean: {clean})"),
            }
        }
    }

    /// Every ack until the response ends, as "KIND@timecode" (IDLE left out).
    async fn all_acks(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                Reply::Ack(a) if a["EventType"] == "IDLE" => {}
                Reply::Ack(a) => out.push(label(&a)),
                Reply::Split | Reply::Batched => {}
                Reply::Closed(clean) => {
                    assert!(clean, "the response ends cleanly");
                    return out;
                }
            }
        }
    }

    /// The next three acks of one fragment, as "KIND@timecode" or "ERROR(code)@timecode".
    async fn fragment_acks(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(label(&self.ack().await));
        }
        out
    }
}

/// An ack as "KIND@timecode", or "ERROR(id)@timecode".
fn label(a: &Value) -> String {
    let kind = match a["EventType"].as_str().unwrap() {
        "ERROR" => format!("ERROR({})", a["ErrorId"]),
        k => k.to_owned(),
    };
    format!("{kind}@{}", a["FragmentTimecode"])
}

fn client_tls(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_file_iter(&pki.ca_pem).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The PutMedia request head, SigV4-signed with `secret` and `token`.
/// A signed PutMedia head; `absolute` sends the request target as a full URL (the form
/// meant for proxies) instead of `/putMedia`.
fn signed_head(
    host: &str,
    stream: &str,
    secret: &str,
    token: &str,
    absolute: bool,
) -> http::Request<()> {
    let url = format!("https://{host}/putMedia");
    let mut req = http::Request::post(&url)
        .header("host", host)
        .header("x-amzn-stream-name", stream)
        .header("x-amzn-fragment-timecode-type", "ABSOLUTE")
        .header("x-amzn-producer-start-timestamp", "1763700000.000")
        .header("x-amzn-fragment-acknowledgment-required", "1")
        .body(())
        .unwrap();
    let creds = Credentials::new(ACCESS_KEY, secret, Some(token.into()), None, "test");
    let identity = creds.into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("kinesisvideo")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()));
    let signable = SignableRequest::new("POST", &url, headers, SignableBody::Bytes(&[])).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    req.headers_mut()
        .insert("transfer-encoding", "chunked".parse().unwrap());
    if !absolute {
        *req.uri_mut() = http::Uri::from_static("/putMedia");
    }
    req
}

/// Opens a PutMedia request (nothing of the body sent yet).
async fn open(fake: &FakePutMedia, pki: &Pki, stream: &str, secret: &str, token: &str) -> Client {
    open_as(fake, pki, (stream, secret, token), false).await
}

async fn open_as(
    fake: &FakePutMedia,
    pki: &Pki,
    (stream, secret, token): (&str, &str, &str),
    absolute: bool,
) -> Client {
    let host = fake.url.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(client_tls(pki))
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(8);
    let chunks = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(BodyFrame::data(b)), rx))
    });
    let (parts, ()) = signed_head(&host, stream, secret, token, absolute).into_parts();
    let request = http::Request::from_parts(parts, StreamBody::new(chunks));
    let response = timeout(WAIT, sender.send_request(request))
        .await
        .expect("response head in time")
        .unwrap();
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amz-errortype")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let (tx, replies) = mpsc::unbounded_channel();
    tokio::spawn(read_acks(response.into_body(), tx));
    Client {
        status,
        error_type,
        body: Some(body_tx),
        replies,
    }
}

/// Splits the response into lines however its writes are cut.
async fn read_acks(mut body: hyper::body::Incoming, tx: mpsc::UnboundedSender<Reply>) {
    let mut pending = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(f)) => {
                let Ok(data) = f.into_data() else { continue };
                pending.extend_from_slice(&data);
                if data.iter().filter(|b| **b == b'\n').count() > 1 {
                    let _ = tx.send(Reply::Batched);
                }
                if data.last() != Some(&b'\n') {
                    let _ = tx.send(Reply::Split);
                }
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    let v = serde_json::from_slice(&line).expect("each ack line is JSON");
                    let _ = tx.send(Reply::Ack(v));
                }
            }
            Some(Err(_)) => {
                let _ = tx.send(Reply::Closed(false));
                return;
            }
            None => {
                assert!(pending.is_empty(), "a partial line at the end");
                let _ = tx.send(Reply::Closed(true));
                return;
            }
        }
    }
}

async fn start() -> (tempfile::TempDir, Pki, FakePutMedia) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let fake = FakePutMedia::start(&pki, REGION).await;
    fake.add_stream(STREAM);
    (dir, pki, fake)
}

async fn open_ok(fake: &FakePutMedia, pki: &Pki) -> Client {
    let c = open(fake, pki, STREAM, SECRET_KEY, SESSION_TOKEN).await;
    assert_eq!(c.status, 200, "{:?}", fake.errors());
    c
}

fn header() -> Vec<u8> {
    let key = avc::access_unit(true, &avc::slice(true, &[0x88, 0x84]));
    let track = TrackInfo::from_keyframe(&key).unwrap();
    mkv::header(&track, [0x11; 16], 1)
}

/// A one-GOP fragment of `n` frames, 33 ms apart from `start_ms`.
/// A fragment of `n` frames from `start_ms`, its cluster left open (it ends where the
/// next element begins).
fn fragment(start_ms: u64, n: u64) -> Vec<u8> {
    fragment_tagged(start_ms, n, &[])
}

/// A fragment followed by its Tags, which end its cluster at once.
fn fragment_tagged(start_ms: u64, n: u64, tags: &[(&str, &str)]) -> Vec<u8> {
    let units: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let payload = vec![(i as u8).wrapping_mul(37) | 1; 100 + i as usize * 10];
            avc::access_unit(i == 0, &avc::slice(i == 0, &payload))
        })
        .collect();
    let frames: Vec<Frame<'_>> = units
        .iter()
        .enumerate()
        .map(|(i, au)| Frame {
            annex_b: au,
            time_ms: start_ms + 33 * i as u64,
            keyframe: i == 0,
        })
        .collect();
    mkv::fragment(&frames, &[], tags).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_fragments_are_persisted_with_increasing_fragment_numbers() {
    let (_dir, pki, fake) = start().await;
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    let starts = [T0, T0 + 1_000, T0 + 2_000];
    for (i, t) in starts.iter().enumerate() {
        let bytes = fragment_tagged(*t, 10, &[("EVENT_ID", "01JTEST")]);
        if i == 1 {
            // Elements split across chunks, down to a byte.
            let (a, rest) = bytes.split_at(7);
            let (b, d) = rest.split_at(1);
            for part in [a, b, d] {
                c.send(part.to_vec()).await;
            }
        } else {
            c.send(bytes).await;
        }
    }
    c.finish();
    let (mut numbers, mut split, mut batched) = (Vec::new(), 0, 0);
    for t in starts {
        let mut kinds = Vec::new();
        while kinds.len() < 3 {
            let a = match c.next().await {
                Reply::Ack(a) => a,
                Reply::Split => {
                    split += 1;
                    continue;
                }
                Reply::Batched => {
                    batched += 1;
                    continue;
                }
                Reply::Closed(_) => panic!("closed early"),
            };
            assert_eq!(a["FragmentTimecode"], t, "{a}");
            kinds.push(a["EventType"].as_str().unwrap().to_owned());
            numbers.push(a["FragmentNumber"].as_str().unwrap().to_owned());
        }
        assert_eq!(kinds, ["BUFFERING", "RECEIVED", "PERSISTED"]);
    }
    assert!(matches!(c.next().await, Reply::Closed(true)));
    assert!(
        split >= 1 && batched >= 1,
        "the client's parser was exercised"
    );
    numbers.dedup();
    assert_eq!(numbers.len(), 3);
    assert!(numbers
        .iter()
        .all(|n| n.len() == 48 && n.bytes().all(|b| b.is_ascii_digit())));
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let persisted = fake.persisted();
    let got: Vec<(u64, usize, usize)> = persisted
        .iter()
        .map(|f| (f.timecode_ms, f.frames, f.keyframes))
        .collect();
    assert_eq!(got, starts.map(|t| (t, 10, 1)));
    assert_eq!(persisted[0].last_frame_ms, T0 + 9 * 33);
    assert_eq!(persisted[2].tags, [("EVENT_ID".into(), "01JTEST".into())]);
    assert_eq!((fake.connections(), fake.acks_sent("PERSISTED")), (1, 3));
    assert_eq!(fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_tokens_and_streams_are_refused_before_the_body() {
    let (_dir, pki, fake) = start().await;
    // No body byte is sent: the answer comes from the head alone.
    let c = open(&fake, &pki, STREAM, "not-the-secret", SESSION_TOKEN).await;
    assert_eq!(
        (c.status, c.error_type.as_str()),
        (403, "AccessDeniedException")
    );
    let c = open(&fake, &pki, STREAM, SECRET_KEY, "some-other-token").await;
    assert_eq!(
        (c.status, c.error_type.as_str()),
        (403, "UnrecognizedClientException")
    );
    let c = open(&fake, &pki, "nobody", SECRET_KEY, SESSION_TOKEN).await;
    assert_eq!(
        (c.status, c.error_type.as_str()),
        (404, "ResourceNotFoundException")
    );
    // A full URL as the request target is the proxy form: an origin server refuses it.
    let c = open_as(&fake, &pki, (STREAM, SECRET_KEY, SESSION_TOKEN), true).await;
    assert_eq!(
        (c.status, c.error_type.as_str()),
        (400, "InvalidArgumentException")
    );
    assert_eq!(fake.connections(), 0);
    assert_eq!(fake.errors().len(), 4, "{:?}", fake.errors());
    assert!(
        fake.errors()[3].contains("absolute form"),
        "{:?}",
        fake.errors()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_not_starting_on_a_keyframe_gets_4006() {
    let (_dir, pki, fake) = start().await;
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    // A delta frame written as the cluster's first frame, then its keyframe flag cleared.
    let delta = avc::access_unit(false, &avc::slice(false, &[0x9A; 50]));
    let first = Frame {
        annex_b: &delta,
        time_ms: T0,
        keyframe: true,
    };
    let mut bad = mkv::fragment(&[first], &[], &[]).unwrap();
    let flags = bad
        .windows(4)
        .position(|w| w == [0x81, 0x00, 0x00, 0x80])
        .unwrap();
    bad[flags + 3] = 0x00;
    c.send(bad).await;
    c.send(fragment(T0 + 1_000, 3)).await;
    c.finish();
    let t = |ms: u64| ms.to_string();
    assert_eq!(
        c.fragment_acks().await,
        [
            format!("BUFFERING@{}", t(T0)),
            format!("RECEIVED@{}", t(T0)),
            format!("ERROR(4006)@{}", t(T0))
        ]
    );
    let good = c.fragment_acks().await;
    assert_eq!(
        good[2],
        format!("PERSISTED@{}", t(T0 + 1_000)),
        "the connection goes on"
    );
    let errors = fake.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("keyframe"), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timecode_equal_to_the_last_frame_gets_4004() {
    let (_dir, pki, fake) = start().await;
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    c.send(fragment(T0, 3)).await; // frames at T0, +33, +66
    c.send(fragment(T0 + 66, 3)).await; // starts on the last frame's time
    c.send(fragment(T0 + 67, 3)).await;
    c.finish();
    assert_eq!(c.fragment_acks().await[2], format!("PERSISTED@{T0}"));
    assert_eq!(
        c.fragment_acks().await[2],
        format!("ERROR(4004)@{}", T0 + 66)
    );
    assert_eq!(c.fragment_acks().await[2], format!("PERSISTED@{}", T0 + 67));
    let errors = fake.errors();
    assert!(
        errors.len() == 1 && errors[0].contains("4004"),
        "{errors:?}"
    );
    assert_eq!(fake.persisted().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_mid_fragment_cuts_the_connection_and_a_resend_is_persisted() {
    let (_dir, pki, fake) = start().await;
    fake.drop_mid_fragment(1);
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    c.send(fragment(T0, 5)).await;
    match c.next().await {
        Reply::Closed(clean) => assert!(!clean, "cut, not ended"),
        Reply::Ack(a) => panic!("no ack for a cut fragment: {a}"),
        Reply::Split | Reply::Batched => panic!("no ack for a cut fragment"),
    }
    assert!(fake.persisted().is_empty());
    // A fresh connection with a fresh header; the same fragment again.
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    c.send(fragment(T0, 5)).await;
    c.finish();
    assert_eq!(c.fragment_acks().await[2], format!("PERSISTED@{T0}"));
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_next_and_a_delayed_persist() {
    let (_dir, pki, fake) = start().await;
    fake.fail_next(5000);
    fake.set_persist_delay(Duration::from_millis(300));
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    c.send(fragment(T0, 3)).await;
    c.send(fragment(T0 + 1_000, 3)).await;
    c.finish();
    let ended = std::time::Instant::now();
    let acks = c.all_acks().await;
    assert!(
        ended.elapsed() >= Duration::from_millis(250),
        "persisting waits"
    );
    let of = |t: u64| -> Vec<&str> {
        acks.iter()
            .filter_map(|a| a.strip_suffix(&format!("@{t}")))
            .collect()
    };
    assert_eq!(of(T0), ["BUFFERING", "RECEIVED", "ERROR(5000)"], "{acks:?}");
    assert_eq!(
        of(T0 + 1_000),
        ["BUFFERING", "RECEIVED", "PERSISTED"],
        "{acks:?}"
    );
    assert_eq!(fake.persisted().len(), 1);
    assert_eq!(
        fake.errors(),
        Vec::<String>::new(),
        "an injected fault is no violation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_closes_the_stream_and_is_refused_after() {
    let (_dir, pki, fake) = start().await;
    let expires = SystemTime::now() + Duration::from_millis(1_500);
    fake.accept_tokens(Arc::new(move |t| (t == SESSION_TOKEN).then_some(expires)));
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    c.send(fragment(T0, 3)).await;
    assert_eq!(c.ack().await["EventType"], "BUFFERING");
    assert!(matches!(c.next().await, Reply::Closed(false)));
    assert_eq!(fake.expired_closes(), 1);
    let c = open(&fake, &pki, STREAM, SECRET_KEY, SESSION_TOKEN).await;
    assert_eq!(
        (c.status, c.error_type.as_str()),
        (403, "ExpiredTokenException")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_acks_flow_and_a_second_connection_is_recorded() {
    let (_dir, pki, fake) = start().await;
    let mut first = open_ok(&fake, &pki).await;
    first.send(header()).await;
    let second = open_ok(&fake, &pki).await;
    let errors = fake.errors();
    assert!(
        errors == [format!("two connections for stream {STREAM}")],
        "{errors:?}"
    );
    drop(second);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(first.ack_or_idle().await["EventType"], "IDLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_mkv_fails_the_open_fragment_and_ends_the_request() {
    let (_dir, pki, fake) = start().await;
    let mut c = open_ok(&fake, &pki).await;
    c.send(header()).await;
    let mut bytes = fragment(T0, 3);
    bytes.extend_from_slice(&[0xFF, 0x84, 1, 2, 3, 4]); // no such element in a Cluster
    c.send(bytes).await;
    assert_eq!(c.ack().await["EventType"], "BUFFERING");
    let error = c.ack().await;
    assert_eq!(
        (&error["ErrorId"], &error["ErrorCode"]),
        (&4006.into(), &"INVALID_MKV_DATA".into())
    );
    assert!(matches!(c.next().await, Reply::Closed(_)));
    let errors = fake.errors();
    assert!(
        errors.len() == 1 && errors[0].contains("unknown element FF"),
        "{errors:?}"
    );
    assert!(fake.persisted().is_empty());
}
