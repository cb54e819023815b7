//! One authentication in front of every route but `/healthz` (and `/metrics` when
//! `web.metrics_public`), when `web.token` is set. Programs send
//! `Authorization: Bearer <token>`; people log in once at `/login` and get an `HttpOnly`,
//! `SameSite=Strict` session cookie, which the viewer page and its signaling socket then
//! use, so the token never appears in a URL. Tokens are compared in constant time and
//! wrong ones are throttled per client address (`throttle`).
//!
//! The check is a layer over the whole router, fallback included: a route added later is
//! protected unless it is named in `PUBLIC`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::throttle::Throttle;

/// The session cookie's name.
pub const COOKIE: &str = "edgecam_session";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 64;
/// Paths that answer without a credential.
pub const PUBLIC: &[&str] = &[
    "/healthz",
    "/login",
    // ONVIF authenticates by its own WS-Security (NVRs cannot log in); the snapshot
    // URI it hands out by HTTP Basic with the same user and password.
    "/onvif/device_service",
    "/onvif/media_service",
    "/onvif/events_service",
    "/onvif/snapshot.jpg",
];

/// Paths under which every path is public: each pull-point subscription's address.
pub const PUBLIC_UNDER: &[&str] = &["/onvif/subscription/"];

/// The credential check, shared by the server's connections.
#[derive(Debug)]
pub struct Auth {
    /// `None`: no credential configured (only allowed on loopback).
    token: Option<String>,
    metrics_public: bool,
    /// Cookies carry `Secure` (the server speaks HTTPS).
    secure: bool,
    state: Mutex<AuthState>,
}

#[derive(Debug, Default)]
struct AuthState {
    /// Session id → when it expires.
    sessions: HashMap<String, Instant>,
    throttle: Throttle,
}

/// What a request presented.
enum Presented {
    Nothing,
    Bearer(String),
    Session(String),
}

impl Auth {
    pub fn new(token: Option<&str>, metrics_public: bool, secure: bool) -> Self {
        Self {
            token: token.map(str::to_owned),
            metrics_public,
            secure,
            state: Mutex::new(AuthState::default()),
        }
    }

    /// Whether requests need a credential at all.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Extra cookie attributes: `Secure` over HTTPS, so the cookie never goes out in clear.
    fn cookie_flags(&self) -> &'static str {
        if self.secure {
            "; Secure"
        } else {
            ""
        }
    }

    fn public(&self, path: &str) -> bool {
        PUBLIC.contains(&path)
            || PUBLIC_UNDER.iter().any(|p| path.starts_with(p))
            || (self.metrics_public && path == "/metrics")
    }

    fn token_matches(&self, given: &str) -> bool {
        self.token
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(given.as_bytes())))
    }

    fn with<T>(&self, f: impl FnOnce(&mut AuthState) -> T) -> T {
        // A poisoned lock only means a handler panicked mid-update; the maps stay usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }

    fn session_valid(&self, id: &str, now: Instant) -> bool {
        self.with(|s| {
            s.sessions.retain(|_, expires| *expires > now);
            s.sessions
                .keys()
                .any(|k| bool::from(k.as_bytes().ct_eq(id.as_bytes())))
        })
    }

    fn new_session(&self, now: Instant) -> Option<String> {
        let mut bytes = [0u8; 32];
        let random = rustls::crypto::aws_lc_rs::default_provider().secure_random;
        random.fill(&mut bytes).ok()?;
        let id = hex::encode(bytes);
        self.with(|s| {
            s.sessions.retain(|_, expires| *expires > now);
            if s.sessions.len() >= MAX_SESSIONS {
                let oldest = s
                    .sessions
                    .iter()
                    .min_by_key(|(_, e)| **e)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    s.sessions.remove(&k);
                }
            }
            s.sessions.insert(id.clone(), now + SESSION_TTL);
        });
        Some(id)
    }

    fn end_session(&self, id: &str) {
        self.with(|s| s.sessions.remove(id));
    }

    pub(super) fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.with(|s| s.throttle.blocked(ip, now))
    }

    pub(super) fn failed(&self, ip: IpAddr, now: Instant) {
        self.with(|s| s.throttle.failed(ip, now));
    }

    fn succeeded(&self, ip: IpAddr) {
        self.with(|s| s.throttle.succeeded(ip));
    }
}

fn presented(headers: &HeaderMap) -> Presented {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(token) = auth.and_then(|v| v.strip_prefix("Bearer ")) {
        return Presented::Bearer(token.trim().to_owned());
    }
    match session_cookie(headers) {
        Some(id) => Presented::Session(id),
        None => Presented::Nothing,
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The layer: lets a request through when it needs no credential or has a good one.
pub async fn require(State(auth): State<Arc<Auth>>, req: Request, next: Next) -> Response {
    let peer = peer_of(req.extensions());
    if !auth.enabled() || auth.public(req.uri().path()) {
        return next.run(req).await;
    }
    let now = Instant::now();
    if let Some(wait) = auth.blocked(peer.ip(), now) {
        return too_many(wait);
    }
    match presented(req.headers()) {
        Presented::Bearer(t) if auth.token_matches(&t) => {
            auth.succeeded(peer.ip());
            next.run(req).await
        }
        Presented::Bearer(_) => {
            auth.failed(peer.ip(), now);
            tracing::warn!(client = %peer.ip(), path = req.uri().path(), "wrong credential");
            unauthorized(req.headers())
        }
        Presented::Session(id) if auth.session_valid(&id, now) => next.run(req).await,
        Presented::Session(_) | Presented::Nothing => unauthorized(req.headers()),
    }
}

/// Where a request came from (the server is run with connect info; without it, e.g. a
/// router driven in-process, every request counts as one unknown address).
pub(super) fn peer_of(ext: &axum::http::Extensions) -> SocketAddr {
    ext.get::<ConnectInfo<SocketAddr>>()
        .map_or(UNKNOWN_PEER, |ConnectInfo(p)| *p)
}

const UNKNOWN_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

pub(super) fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs().max(1);
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, secs.to_string())],
        format!("too many wrong credentials from this address; try again in {secs} s\n"),
    )
        .into_response()
}

fn unauthorized(headers: &HeaderMap) -> Response {
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let mut response = if browser {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><meta http-equiv=\"refresh\" content=\"0; url=/login\">\
             <a href=\"/login\">Log in</a>\n",
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "this camera needs a credential: send \"Authorization: Bearer <web.token>\", \
             or log in at /login\n",
        )
            .into_response()
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"edgecam\""),
    );
    response
}

/// The login page.
const LOGIN_PAGE: &str = include_str!("login.html");

/// `GET /login`.
pub async fn login_page() -> Response {
    page(StatusCode::OK, "")
}

fn page(status: StatusCode, message: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        LOGIN_PAGE.replace("{message}", message),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /login` (a form with `token`): a session cookie and back to the viewer page.
pub async fn login(State(auth): State<Arc<Auth>>, req: Request) -> Response {
    use axum::extract::FromRequest;
    let peer = peer_of(req.extensions());
    let form = match axum::Form::<LoginForm>::from_request(req, &()).await {
        Ok(axum::Form(form)) => form,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                &format!("Send the login form: {e}"),
            )
        }
    };
    let now = Instant::now();
    if !auth.enabled() {
        return redirect_home(None);
    }
    if let Some(wait) = auth.blocked(peer.ip(), now) {
        return too_many(wait);
    }
    if !auth.token_matches(&form.token) {
        auth.failed(peer.ip(), now);
        tracing::warn!(client = %peer.ip(), "wrong token at /login");
        return page(StatusCode::UNAUTHORIZED, "That is not this camera's token.");
    }
    auth.succeeded(peer.ip());
    match auth.new_session(now) {
        Some(id) => {
            tracing::info!(client = %peer.ip(), "logged in");
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                SESSION_TTL.as_secs(),
                auth.cookie_flags()
            );
            redirect_home(Some(cookie))
        }
        None => page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The camera could not make a session; try again.",
        ),
    }
}

/// `POST /logout`: ends the session and clears the cookie.
pub async fn logout(State(auth): State<Arc<Auth>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        auth.end_session(&id);
    }
    let clear = format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        auth.cookie_flags()
    );
    let mut r = redirect_home(Some(clear));
    if let Some(v) = r.headers_mut().get_mut(header::LOCATION) {
        *v = HeaderValue::from_static("/login");
    }
    r
}

fn redirect_home(cookie: Option<String>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_from_the_bearer_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert!(matches!(presented(&h), Presented::Nothing));
        h.insert(
            header::COOKIE,
            "a=1; edgecam_session=abc; b=2".parse().unwrap(),
        );
        assert!(matches!(presented(&h), Presented::Session(s) if s == "abc"));
        h.insert(header::AUTHORIZATION, "Bearer  t0ken ".parse().unwrap());
        assert!(matches!(presented(&h), Presented::Bearer(t) if t == "t0ken"));
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let auth = Auth::new(Some("0123456789abcdef"), false, false);
        let t0 = Instant::now();
        let id = auth.new_session(t0).unwrap();
        assert_eq!(id.len(), 64);
        assert!(auth.session_valid(&id, t0));
        assert!(!auth.session_valid("nope", t0));
        assert!(!auth.session_valid(&id, t0 + SESSION_TTL));
        for _ in 0..(MAX_SESSIONS + 5) {
            auth.new_session(t0);
        }
        assert!(auth.with(|s| s.sessions.len()) <= MAX_SESSIONS);
    }

    #[test]
    fn only_health_and_login_are_public_unless_metrics_are_opened() {
        let closed = Auth::new(Some("0123456789abcdef"), false, false);
        assert!(closed.public("/healthz") && closed.public("/login"));
        assert!(!closed.public("/metrics") && !closed.public("/"));
        assert!(Auth::new(Some("0123456789abcdef"), true, false).public("/metrics"));
        assert!(!Auth::new(None, false, false).enabled());
    }
}
