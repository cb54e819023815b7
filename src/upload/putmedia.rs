//! The PutMedia connection: one chunked `POST /putMedia` over HTTP/1.1 (TLS), SigV4-signed
//! headers with the payload hashed as the empty string (the body is streamed), the MKV
//! written as fragments come, and the acknowledgement stream parsed as it arrives.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::debug;

use super::ack::{Ack, AckParser};
use crate::aws::sign::sign_streamed;

/// Connecting, TLS and the response headers, each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Body chunks queued ahead of the socket.
const BODY_QUEUE: usize = 4;
/// Acks queued ahead of the uploader.
const ACK_QUEUE: usize = 256;
/// Most of an error body kept for the message.
const MAX_ERROR_BODY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PutMediaError {
    #[error("PutMedia endpoint {0:?} is not an http(s) URL")]
    BadEndpoint(String),
    #[error("cannot reach the PutMedia endpoint: {0}")]
    Connect(String),
    #[error("cannot sign PutMedia: {0}")]
    Sign(String),
    /// The service refused the request before the body.
    #[error("PutMedia refused: HTTP {status} {error_type}: {message}")]
    Refused {
        status: u16,
        error_type: String,
        message: String,
        /// How far the service's clock (its `Date`) is from ours, when that matters:
        /// the request is signed again with the corrected time.
        skew_ms: Option<i64>,
    },
}

impl PutMediaError {
    /// What the uploader does: `true` = retry after a backoff; `false` = the stream or the
    /// account needs fixing (missing stream, access denied), so stop and alert.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Refused {
                status,
                error_type,
                skew_ms,
                ..
            } => {
                // Expired credentials are refreshed by the next attempt, and a signature
                // made on a wrong clock is made again on the service's.
                skew_ms.is_some()
                    || *status >= 500
                    || *status == 429
                    || error_type.contains("Expired")
                    || error_type.contains("ConnectionLimit")
                    || error_type.contains("Throttl")
            }
            Self::BadEndpoint(_) => false,
            Self::Connect(_) | Self::Sign(_) => true,
        }
    }

    /// The code counted in `edgecam_upload_errors_total`: the HTTP status, or 0.
    pub fn code(&self) -> u32 {
        match self {
            Self::Refused { status, .. } => u32::from(*status),
            _ => 0,
        }
    }
}

/// Where and what to put.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://host[:port]` from GetDataEndpoint.
    pub endpoint: String,
    pub stream_name: String,
    pub region: String,
}

/// What the response stream says.
#[derive(Debug)]
pub enum Event {
    Ack(Ack),
    /// A line that is not an ack (logged by the caller, otherwise ignored).
    BadAck(String),
    /// The response ended or the connection broke.
    Closed(String),
}

/// An open PutMedia request: write fragments, read acks.
#[derive(Debug)]
pub struct Connection {
    body: mpsc::Sender<Bytes>,
    pub events: mpsc::Receiver<Event>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Connection {
    /// Writes bytes (a header or a whole fragment) as one chunk; `false` when the
    /// connection is gone.
    pub async fn write(&self, bytes: Bytes) -> bool {
        self.body.send(bytes).await.is_ok()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let mut config = (*crate::tls::public_client_config()).clone();
        // The KVS data endpoints are reported to refuse HTTP/2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }))
}

/// `secs.millis`, as `x-amzn-producer-start-timestamp` wants it.
pub fn producer_timestamp(t: DateTime<Utc>) -> String {
    let ms = t.timestamp_millis();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The signed request head (method, URI, headers) for a PutMedia call.
pub fn signed_request(
    target: &Target,
    host: &str,
    producer_start: DateTime<Utc>,
    creds: &Credentials,
    now: SystemTime,
) -> Result<http::Request<()>, PutMediaError> {
    let url = format!("{}/putMedia", target.endpoint.trim_end_matches('/'));
    let mut req = http::Request::post(&url)
        .header("host", host)
        .header("transfer-encoding", "chunked")
        .header("x-amzn-stream-name", &target.stream_name)
        .header("x-amzn-fragment-timecode-type", "ABSOLUTE")
        .header(
            "x-amzn-producer-start-timestamp",
            producer_timestamp(producer_start),
        )
        .header("x-amzn-fragment-acknowledgment-required", "1")
        .body(())
        .map_err(|e| PutMediaError::Sign(e.to_string()))?;
    sign_streamed(&mut req, creds, &target.region, "kinesisvideo", now)
        .map_err(|e| PutMediaError::Sign(e.to_string()))?;
    // Signed over the full URL, sent in origin form (`POST /putMedia`, the `host` header
    // naming the server), as RFC 9112 §3.2.1 asks of a request to an origin server:
    // hyper's connection-level client writes whatever URI it is given, and the absolute
    // form is meant for proxies.
    *req.uri_mut() = http::Uri::from_static("/putMedia");
    Ok(req)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn open_socket(uri: &http::Uri) -> Result<(Box<dyn Io>, String), PutMediaError> {
    let bad = || PutMediaError::BadEndpoint(uri.to_string());
    let host = uri.host().ok_or_else(bad)?.to_owned();
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad()),
    };
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let connect = TcpStream::connect((host.as_str(), port));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| PutMediaError::Connect(format!("{host}:{port}: timed out")))?
        .map_err(|e| PutMediaError::Connect(format!("{host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if !tls {
        return Ok((Box::new(tcp), host_header));
    }
    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| bad())?;
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp),
    )
    .await
    .map_err(|_| PutMediaError::Connect(format!("{host}:{port}: TLS timed out")))?
    .map_err(|e| PutMediaError::Connect(format!("{host}:{port}: TLS: {e}")))?;
    Ok((Box::new(stream), host_header))
}

/// Opens a PutMedia request and writes `header` (EBML + Segment + Info + Tracks) on it.
/// Returns once the service accepted the request (response headers 200).
pub async fn connect(
    target: &Target,
    creds: &Credentials,
    producer_start: DateTime<Utc>,
    header: Bytes,
    now: SystemTime,
) -> Result<Connection, PutMediaError> {
    let uri: http::Uri = format!("{}/putMedia", target.endpoint.trim_end_matches('/'))
        .parse()
        .map_err(|_| PutMediaError::BadEndpoint(target.endpoint.clone()))?;
    let (io, host) = open_socket(&uri).await?;
    let head = signed_request(target, &host, producer_start, creds, now)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| PutMediaError::Connect(e.to_string()))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(error = %e, "PutMedia connection ended");
        }
    });
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(BODY_QUEUE);
    let chunks = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let (parts, ()) = head.into_parts();
    let request = http::Request::from_parts(parts, StreamBody::new(chunks));
    // The header goes out at once: the service answers after reading the request head.
    let _ = body_tx.send(header).await;
    let response = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| PutMediaError::Connect("no response to PutMedia".into()))?
        .map_err(|e| PutMediaError::Connect(crate::aws::error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let skew_ms =
            crate::aws::skew_from_date(response.headers().get("date"), chrono::Utc::now());
        let error_type = response
            .headers()
            .get("x-amz-errortype")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.into_body().collect();
        let body = tokio::time::timeout(CONNECT_TIMEOUT, body)
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]).into_owned();
        return Err(PutMediaError::Refused {
            status: status.as_u16(),
            error_type,
            message,
            skew_ms,
        });
    }
    let (events_tx, events) = mpsc::channel(ACK_QUEUE);
    let reader = tokio::spawn(read_acks(response.into_body(), events_tx));
    Ok(Connection {
        body: body_tx,
        events,
        tasks: vec![driver, reader],
    })
}

async fn read_acks(body: hyper::body::Incoming, out: mpsc::Sender<Event>) {
    let mut parser = AckParser::default();
    let mut frames = body.into_data_stream();
    let why = loop {
        match frames.next().await {
            Some(Ok(chunk)) => {
                for ack in parser.push(&chunk) {
                    let event = match ack {
                        Ok(a) => Event::Ack(a),
                        Err(e) => Event::BadAck(e.to_string()),
                    };
                    if out.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Some(Err(e)) => break crate::aws::error_chain(&e),
            None => break "the service ended the response".to_owned(),
        }
    };
    let _ = out.send(Event::Closed(why)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_timestamps_are_seconds_dot_millis() {
        let t = DateTime::from_timestamp_millis(1_763_700_000_045).unwrap();
        assert_eq!(producer_timestamp(t), "1763700000.045");
    }

    #[test]
    fn the_request_is_signed_over_the_kvs_headers_with_an_empty_payload() {
        let target = Target {
            endpoint: "https://s-1234.kinesisvideo.eu-west-1.amazonaws.com".into(),
            stream_name: "porch".into(),
            region: "eu-west-1".into(),
        };
        let creds = Credentials::new("AKID", "secret", Some("token".into()), None, "test");
        let t = DateTime::from_timestamp_millis(1_763_700_000_000).unwrap();
        let req = signed_request(
            &target,
            "s-1234.kinesisvideo.eu-west-1.amazonaws.com",
            t,
            &creds,
            t.into(),
        )
        .unwrap();
        let h = req.headers();
        assert_eq!(req.uri().to_string(), "/putMedia", "origin form");
        assert_eq!(h["host"], "s-1234.kinesisvideo.eu-west-1.amazonaws.com");
        assert_eq!(h["x-amz-security-token"], "token");
        assert_eq!(
            h["x-amz-content-sha256"],
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256 of the empty string: the body is streamed"
        );
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKID/20251121/eu-west-1/kinesisvideo/aws4_request"
            ),
            "{auth}"
        );
        assert!(auth.contains("x-amzn-stream-name"), "{auth}");
        assert!(!auth.contains("transfer-encoding"), "{auth}");
        assert_eq!(h["transfer-encoding"], "chunked");
    }
}
