//! `edgecam trigger`: sends a `record` command to the running daemon's HTTP API.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;

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

/// POSTs `body` to `/api/commands` (with `web.token` as the bearer credential, when the
/// config has one) and returns (status, reply JSON text).
pub async fn post_command(
    addr: SocketAddr,
    body: &serde_json::Value,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| {
            format!("cannot reach edgecam at http://{addr} (is it running? see web.listen)")
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = hyper::Request::post("/api/commands?source=cli")
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let request = request.body(Full::new(Bytes::from(body.to_string())))?;
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
