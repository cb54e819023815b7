//! `edgecam trigger`: sends a `record` command to the running daemon's HTTP API (over
//! HTTPS, trusting exactly the daemon's own certificate, when `web.tls` is on).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::config::Config;
use crate::tls;
use crate::web::https;

/// Where to reach the daemon for `listen`: a wildcard address means this machine.
pub fn api_addr(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

/// The request body for `edgecam trigger`.
pub fn body(duration_s: Option<f64>, label: Option<&str>) -> serde_json::Value {
    let mut v = json!({ "command": "record" });
    if let Some(d) = duration_s {
        v["duration_s"] = json!(d);
    }
    if let Some(l) = label {
        v["label"] = json!(l);
    }
    v
}

/// How to reach the running daemon's HTTP API, from its config.
pub struct Api {
    addr: SocketAddr,
    token: Option<String>,
    /// Over HTTPS: a client that trusts exactly the daemon's certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Api {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let Some(listen) = config.web.listen_addr() else {
            bail!("web.listen is not an address");
        };
        let tls = match https::certificate_path(&config.web, &config.storage.data_dir) {
            None => None,
            Some(path) => {
                let cert = https::read_certificate(&path).with_context(|| {
                    "cannot read the camera's HTTPS certificate (the daemon makes it at \
                     its first start; run this as a user who can read the data directory)"
                })?;
                Some(tls::pinned_client_config(cert)?)
            }
        };
        Ok(Self {
            addr: api_addr(listen),
            token: config.web.token.clone(),
            tls,
        })
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// POSTs `body` to `/api/commands` (with `web.token` as the bearer credential, when
    /// the config has one) and returns (status, reply JSON text).
    pub async fn post_command(&self, body: &serde_json::Value) -> anyhow::Result<(u16, String)> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| {
                format!(
                    "cannot reach edgecam at {} (is it running? see web.listen)",
                    self.url()
                )
            })?;
        let mut request = hyper::Request::post("/api/commands?source=cli")
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let request = request.body(Full::new(Bytes::from(body.to_string())))?;
        match &self.tls {
            None => send(stream, request).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                    .connect(name, stream)
                    .await
                    .with_context(|| {
                        format!(
                            "TLS with {} failed (is this the camera's certificate?)",
                            self.url()
                        )
                    })?;
                send(stream, request).await
            }
        }
    }
}

async fn send<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> anyhow::Result<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status == 0 {
        bail!("no reply");
    }
    Ok((status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_is_reached_on_loopback() {
        assert_eq!(
            api_addr("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            api_addr("192.168.1.5:80".parse().unwrap()),
            "192.168.1.5:80".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn body_has_only_what_was_given() {
        assert_eq!(body(None, None), json!({"command": "record"}));
        assert_eq!(
            body(Some(30.0), Some("door")),
            json!({"command": "record", "duration_s": 30.0, "label": "door"})
        );
    }
}
