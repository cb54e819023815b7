//! Defences against other web pages: DNS rebinding and cross-site requests. Applied to
//! every request, with or without a credential (a camera on 127.0.0.1 with no token is
//! exactly what a rebinding page aims at).
//!
//! - `Host` must name the camera: its listen address, `localhost`, an address of this
//!   machine, its hostname (or `<hostname>.local`), or one of `web.hosts`. Else 421.
//! - A request that changes something (any method but GET/HEAD/OPTIONS) to `/api/…` must
//!   be `application/json`, which a page cannot send cross-site without CORS. Else 415.
//! - An `Origin`, when sent (browsers send it on POSTs and WebSocket upgrades), must be
//!   this same host. Else 403.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The names the camera answers to, besides its own addresses.
#[derive(Debug, Clone)]
pub struct Hosts {
    listen: SocketAddr,
    names: Vec<String>,
}

impl Hosts {
    /// The address the server listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// `listen` and `web.hosts`, plus `localhost` and this machine's hostname.
    pub fn new(listen: SocketAddr, configured: &[String]) -> Self {
        let mut names: Vec<String> = configured.iter().map(|h| h.to_lowercase()).collect();
        names.push("localhost".into());
        if let Some(h) = crate::net::hostname() {
            let h = h.to_lowercase();
            names.push(format!("{h}.local"));
            names.push(h);
        }
        Self { listen, names }
    }

    /// What a self-signed certificate should name: the host names, the listen address
    /// (unless it is a wildcard) and loopback.
    pub fn certificate_names(&self) -> Vec<String> {
        let mut names = self.names.clone();
        let ip = self.listen.ip();
        if !ip.is_unspecified() {
            names.push(ip.to_string());
        }
        for loopback in ["127.0.0.1", "::1"] {
            if !names.iter().any(|n| n == loopback) {
                names.push(loopback.into());
            }
        }
        names.dedup();
        names
    }

    /// Whether a `Host` header (`name[:port]`) names this camera.
    pub fn allows(&self, host: &str) -> bool {
        let (name, port) = split_host(host);
        if port.is_some_and(|p| p != self.listen.port()) {
            return false;
        }
        let name = name.to_lowercase();
        match name
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip == self.listen.ip() || ip.is_loopback() || is_local(ip),
            Err(_) => self.names.contains(&name),
        }
    }
}

/// `name[:port]`, IPv6 literals in brackets.
pub(super) fn split_host(host: &str) -> (&str, Option<u16>) {
    let cut = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => i,
        _ => return (host, None),
    };
    match host[cut + 1..].parse() {
        Ok(port) if host[..cut].starts_with('[') || !host[..cut].contains(':') => {
            (&host[..cut], Some(port))
        }
        _ => (host, None),
    }
}

/// An address of this machine: only those can be bound.
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The layer.
pub async fn guard(State(hosts): State<Arc<Hosts>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !hosts.allows(&host) {
        tracing::warn!(
            host,
            "refused a request for another host name (DNS rebinding?)"
        );
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this camera does not answer to that host name; add it to web.hosts",
        );
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(&host));
        if !same {
            tracing::warn!(origin = ?origin, "refused a cross-site request");
            return refuse(StatusCode::FORBIDDEN, "cross-site requests are refused");
        }
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && req.uri().path().starts_with("/api/") {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the request as Content-Type: application/json",
            );
        }
    }
    next.run(req).await
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, format!("{why}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Hosts {
        Hosts {
            listen: "0.0.0.0:8080".parse().unwrap(),
            names: vec!["camera.home.arpa".into(), "localhost".into()],
        }
    }

    #[test]
    fn the_camera_answers_to_its_names_and_addresses_only() {
        let h = hosts();
        assert!(h.allows("127.0.0.1:8080"));
        assert!(h.allows("localhost:8080"));
        assert!(h.allows("Camera.Home.Arpa:8080"));
        assert!(h.allows("[::1]:8080"));
        assert!(h.allows("localhost"), "no port: the default one is assumed");
        assert!(!h.allows("evil.example:8080"), "a rebinding name");
        assert!(!h.allows("127.0.0.1:9999"), "another port");
        assert!(
            !h.allows("203.0.113.9:8080"),
            "not an address of this machine"
        );
        assert!(!h.allows(""));
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(split_host("a:80"), ("a", Some(80)));
        assert_eq!(split_host("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host("[::1]"), ("[::1]", None));
        assert_eq!(split_host("::1"), ("::1", None));
        assert_eq!(split_host("a"), ("a", None));
    }
}
