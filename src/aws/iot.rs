//! AWS credentials from the AWS IoT credentials provider: a GET over mutual TLS with the
//! camera's certificate to `https://<endpoint>/role-aliases/<alias>/credentials`, header
//! `x-amzn-iot-thingname`. Cached, and fetched again before they expire (with jitter, so
//! a fleet does not refresh in lock step). Every AWS client of the daemon uses it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, error::CredentialsError, future};
use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::Mutex;
use tracing::{info, warn};

/// Bound on one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest lifetime the service grants (12 h), plus slack for a clock check.
const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600 + 300);
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IotError {
    #[error("cannot reach the IoT credentials endpoint {host}: {error}")]
    Connect { host: String, error: String },
    #[error("the IoT credentials endpoint refused the request (403): check that the certificate is attached to thing {thing:?} and that its policy allows iot:AssumeRoleWithCertificate on role alias {alias:?}")]
    Forbidden { thing: String, alias: String },
    #[error("the IoT credentials endpoint answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unreadable answer from the IoT credentials endpoint: {0}")]
    Body(String),
    #[error(
        "the credentials expire at {expiration}, {detail}: the local clock looks wrong (check NTP)"
    )]
    Clock { expiration: String, detail: String },
}

#[derive(Deserialize)]
struct Answer {
    credentials: Creds,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Creds {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

/// Reads the endpoint's answer and checks its expiry against the local clock (pure).
pub fn parse_answer(
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(Credentials, DateTime<Utc>), IotError> {
    let a: Answer = serde_json::from_slice(body).map_err(|e| IotError::Body(e.to_string()))?;
    let c = a.credentials;
    let expiry = DateTime::parse_from_rfc3339(&c.expiration)
        .map_err(|e| IotError::Body(format!("expiration {:?}: {e}", c.expiration)))?
        .to_utc();
    if expiry <= now {
        return Err(IotError::Clock {
            expiration: c.expiration,
            detail: "which has already passed here".into(),
        });
    }
    if (expiry - now).to_std().unwrap_or_default() > MAX_LIFETIME {
        return Err(IotError::Clock {
            expiration: c.expiration,
            detail: "more than 12 h from now".into(),
        });
    }
    let creds = Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        Some(SystemTime::from(expiry)),
        "iot-credentials-provider",
    );
    Ok((creds, expiry))
}

/// When credentials fetched at `fetched` and expiring at `expiry` should be fetched again:
/// a quarter of their lifetime (at most 5 min) before expiry, up to half as much earlier
/// again by `jitter` in [0, 1) (pure).
pub fn refresh_at(fetched: DateTime<Utc>, expiry: DateTime<Utc>, jitter: f64) -> DateTime<Utc> {
    let lifetime = (expiry - fetched).to_std().unwrap_or_default();
    let margin = (lifetime / 4).min(Duration::from_secs(300));
    let early = margin + margin.mul_f64(jitter.clamp(0.0, 1.0) / 2.0);
    expiry - chrono::Duration::from_std(early).unwrap_or_default()
}

/// Where and as whom to ask.
#[derive(Debug, Clone)]
pub struct IotEndpoint {
    /// `<prefix>.credentials.iot.<region>.amazonaws.com[:port]`.
    pub host: String,
    pub role_alias: String,
    pub thing_name: String,
    /// Mutual TLS: the camera's certificate and key, the endpoint's CA.
    pub tls: Arc<rustls::ClientConfig>,
}

#[derive(Debug)]
struct Cached {
    creds: Credentials,
    refresh_at: DateTime<Utc>,
}

/// The credentials provider; clones share the cache.
#[derive(Debug, Clone)]
pub struct IotCredentials {
    endpoint: IotEndpoint,
    cache: Arc<Mutex<Option<Cached>>>,
}

impl IotCredentials {
    pub fn new(endpoint: IotEndpoint) -> Self {
        Self {
            endpoint,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// Cached credentials, fetched again when due (one fetch at a time).
    pub async fn get(&self) -> Result<Credentials, IotError> {
        let mut cache = self.cache.lock().await;
        let now = Utc::now();
        if let Some(c) = cache.as_ref() {
            if now < c.refresh_at {
                return Ok(c.creds.clone());
            }
        }
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.fetch())
            .await
            .map_err(|_| IotError::Connect {
                host: self.endpoint.host.clone(),
                error: "timed out".into(),
            })??;
        let (creds, expiry) = parse_answer(&body, Utc::now())?;
        let at = refresh_at(now, expiry, fastrand::f64());
        info!(expires = %expiry, refresh_at = %at, "AWS credentials from the IoT credentials provider");
        *cache = Some(Cached {
            creds: creds.clone(),
            refresh_at: at,
        });
        Ok(creds)
    }

    async fn fetch(&self) -> Result<Vec<u8>, IotError> {
        let e = &self.endpoint;
        let connect_err = |error: String| IotError::Connect {
            host: e.host.clone(),
            error,
        };
        let (name, port) = match e.host.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_owned(), p.parse().unwrap_or(443)),
            _ => (e.host.clone(), 443),
        };
        let server = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|err| connect_err(err.to_string()))?;
        let tcp = tokio::net::TcpStream::connect((name.as_str(), port))
            .await
            .map_err(|err| connect_err(err.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&e.tls))
            .connect(server, tcp)
            .await
            .map_err(|err| connect_err(format!("TLS: {err}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|err| connect_err(err.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(format!("/role-aliases/{}/credentials", e.role_alias))
            .header("host", &e.host)
            .header("x-amzn-iot-thingname", &e.thing_name)
            .body(Empty::<Bytes>::new())
            .map_err(|err| IotError::Body(err.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|err| connect_err(err.to_string()))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|err| IotError::Body(err.to_string()))?
            .to_bytes();
        match status {
            200 => Ok(body.to_vec()),
            403 => Err(IotError::Forbidden {
                thing: e.thing_name.clone(),
                alias: e.role_alias.clone(),
            }),
            _ => Err(IotError::Status {
                status,
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }
}

impl provider::ProvideCredentials for IotCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.get().await.map_err(|e| {
                warn!(error = %e, "no AWS credentials");
                CredentialsError::provider_error(e)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    const ANSWER: &str = r#"{"credentials":{"accessKeyId":"ASIAEXAMPLE","secretAccessKey":"s3cr3t","sessionToken":"tok","expiration":"2026-11-21T11:00:00Z"}}"#;

    #[test]
    fn the_answer_gives_session_credentials() {
        let (c, exp) = parse_answer(ANSWER.as_bytes(), at("2026-11-21T10:00:00Z")).unwrap();
        assert_eq!(c.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(c.session_token(), Some("tok"));
        assert_eq!(exp, at("2026-11-21T11:00:00Z"));
        assert!(parse_answer(b"{}", at("2026-11-21T10:00:00Z")).is_err());
    }

    #[test]
    fn a_wrong_clock_is_named() {
        let ahead = parse_answer(ANSWER.as_bytes(), at("2026-11-21T12:00:00Z"))
            .unwrap_err()
            .to_string();
        assert!(ahead.contains("clock"), "{ahead}");
        let behind = parse_answer(ANSWER.as_bytes(), at("2026-11-20T10:00:00Z"))
            .unwrap_err()
            .to_string();
        assert!(behind.contains("clock"), "{behind}");
    }

    #[test]
    fn refresh_comes_before_expiry_spread_by_jitter() {
        let t0 = at("2026-11-21T10:00:00Z");
        // 1 h lifetime: 5 min before, up to 7.5 min with full jitter.
        assert_eq!(
            refresh_at(t0, at("2026-11-21T11:00:00Z"), 0.0),
            at("2026-11-21T10:55:00Z")
        );
        assert_eq!(
            refresh_at(t0, at("2026-11-21T11:00:00Z"), 1.0),
            at("2026-11-21T10:52:30Z")
        );
        // Short lifetimes refresh a quarter before.
        assert_eq!(
            refresh_at(t0, at("2026-11-21T10:00:08Z"), 0.0),
            at("2026-11-21T10:00:06Z")
        );
    }
}
