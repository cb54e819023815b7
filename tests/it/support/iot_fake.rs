//! A fake of the AWS IoT credentials provider: HTTPS with mutual TLS (a client without a
//! certificate from the test CA fails the handshake), `GET /role-aliases/<alias>/credentials`
//! with `x-amzn-iot-thingname`, 403 when the thing is not the certificate's, and session
//! credentials (the test keys the other fakes verify) that expire after `lifetime`. Each
//! fetch issues a distinct session token, `SESSION_TOKEN/<n>`; `token_expiry()` tells the
//! other fakes when each one expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::pki::Pki;
use super::putmedia_fake::TokenExpiry;
use super::sigv4;

pub const ROLE_ALIAS: &str = "edgecam-role-alias";

/// The expiry of each session token issued so far.
type Issued = Arc<Mutex<HashMap<String, SystemTime>>>;

pub struct FakeIot {
    /// `host:port` for `aws.iot_credentials_endpoint`.
    pub host: String,
    fetches: Arc<AtomicU64>,
    issued: Issued,
    /// Lifetime of the credentials handed out.
    pub lifetime: Arc<Mutex<Duration>>,
    /// The thing whose certificate is accepted.
    pub thing: String,
}

impl FakeIot {
    pub async fn start(pki: &Pki, thing: &str) -> Self {
        let tls = pki
            .leaf("iot-credentials", &["localhost", "127.0.0.1"])
            .mtls_server_config(&pki.ca_pem);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fake = FakeIot {
            host: format!("localhost:{port}"),
            fetches: Arc::new(AtomicU64::new(0)),
            issued: Issued::default(),
            lifetime: Arc::new(Mutex::new(Duration::from_secs(3600))),
            thing: thing.to_owned(),
        };
        let (fetches, lifetime, thing) = (
            Arc::clone(&fake.fetches),
            Arc::clone(&fake.lifetime),
            thing.to_owned(),
        );
        let issued = Arc::clone(&fake.issued);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let Ok(stream) = acceptor.accept(tcp).await else {
                    continue; // no or wrong client certificate: the handshake failed
                };
                let (fetches, lifetime, thing, issued) = (
                    Arc::clone(&fetches),
                    Arc::clone(&lifetime),
                    thing.clone(),
                    Arc::clone(&issued),
                );
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let lifetime = *lifetime.lock().unwrap();
                        let reply = answer(&req, &thing, lifetime, &fetches, &issued);
                        async move { Ok::<_, std::convert::Infallible>(reply) }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        fake
    }

    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// When a session token this fake issued expires (None: never issued here); plugs
    /// into `FakePutMedia::accept_tokens`.
    pub fn token_expiry(&self) -> TokenExpiry {
        let issued = Arc::clone(&self.issued);
        Arc::new(move |token| issued.lock().unwrap().get(token).copied())
    }
}

fn answer(
    req: &Request<hyper::body::Incoming>,
    thing: &str,
    lifetime: Duration,
    fetches: &AtomicU64,
    issued: &Mutex<HashMap<String, SystemTime>>,
) -> Response<Full<Bytes>> {
    let reply = |status: u16, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if req.uri().path() != format!("/role-aliases/{ROLE_ALIAS}/credentials") {
        return reply(404, r#"{"message":"Role alias does not exist"}"#.into());
    }
    let asked = req
        .headers()
        .get("x-amzn-iot-thingname")
        .and_then(|v| v.to_str().ok());
    if asked != Some(thing) {
        return reply(403, r#"{"message":"Access Denied"}"#.into());
    }
    let n = fetches.fetch_add(1, Ordering::Relaxed) + 1;
    // Whole seconds, as written below: the client and the other fakes agree on the instant.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs((now + lifetime).as_secs());
    let expiration = chrono::DateTime::<chrono::Utc>::from(expires);
    let token = format!("{}/{n}", sigv4::SESSION_TOKEN);
    issued.lock().unwrap().insert(token.clone(), expires);
    reply(
        200,
        serde_json::json!({"credentials": {
            "accessKeyId": sigv4::ACCESS_KEY,
            "secretAccessKey": sigv4::SECRET_KEY,
            "sessionToken": token,
            "expiration": expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }})
        .to_string(),
    )
}
