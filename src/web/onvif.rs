//! The ONVIF routes: the Device and Media services (SOAP, authenticated by their own
//! WS-Security, so they are public to `web::auth`) and the snapshot URI they hand out
//! (HTTP Basic with the same user and password, as NVRs fetch it). 404 while `[onvif]`
//! is off.

use axum::body::Bytes;
use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::state::WebState;
use crate::onvif::{Call, Reached, Reply, Scene};

fn off() -> Response {
    (
        StatusCode::NOT_FOUND,
        "ONVIF is off: set [onvif] enabled = true\n",
    )
        .into_response()
}

/// Where the client reached us, from its `Host` header (else the listen address).
fn reached(headers: &HeaderMap, s: &WebState) -> Reached {
    let listen = s.hosts.listen();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if host.is_empty() {
        let ip = std::net::SocketAddr::new(listen.ip(), 0).to_string();
        let ip = ip.trim_end_matches(":0").to_owned();
        return Reached {
            host: ip,
            port: listen.port(),
        };
    }
    let (name, port) = super::origin::split_host(host);
    Reached {
        host: name.to_owned(),
        port: port.unwrap_or(listen.port()),
    }
}

/// `POST /onvif/device_service`, `/onvif/media_service` and `/onvif/events_service`
/// (each takes any service's operations: the namespace says which).
pub async fn service(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(s, peer, &headers, &body, None).await
}

/// `POST /onvif/subscription/<id>`: a pull-point subscription's own address.
pub async fn subscription(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // An id that is not a number names no subscription: the answer says so.
    let id = id.parse().unwrap_or(u64::MAX);
    serve(s, peer, &headers, &body, Some(id)).await
}

fn scene_of(status: &crate::recorder::RecorderStatus) -> Scene {
    Scene::new(status.motion, status.objects.keys())
}

async fn serve(
    s: WebState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
    subscription: Option<u64>,
) -> Response {
    let Some(onvif) = s.onvif.clone() else {
        return off();
    };
    // Wrong passwords count against the address as wrong web tokens do.
    if let Some(wait) = s.auth.blocked(peer.ip(), Instant::now()) {
        return super::auth::too_many(wait);
    }
    let at = reached(headers, &s);
    let mut status = s.commands.status();
    let call = Call {
        body,
        at: &at,
        subscription,
        scene: scene_of(&status.borrow_and_update()),
        may_wait: true,
        again: false,
    };
    let answer = match onvif.reply(&call, chrono::Utc::now()) {
        Reply::Now(a) => a,
        Reply::Wait(wait) => {
            // A PullMessages with nothing to tell yet: answer when what the camera sees
            // changes, or when the client's timeout is up.
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                match tokio::time::timeout_at(deadline, status.changed()).await {
                    Ok(Ok(())) if scene_of(&status.borrow_and_update()) == call.scene => {}
                    _ => break,
                }
            }
            let later = Call {
                scene: scene_of(&status.borrow()),
                may_wait: false,
                again: true,
                ..call
            };
            match onvif.reply(&later, chrono::Utc::now()) {
                Reply::Now(a) => a,
                Reply::Wait(_) => return off(),
            }
        }
    };
    if answer.status != 200 {
        tracing::debug!(
            status = answer.status,
            "ONVIF request answered with a fault"
        );
    }
    if answer.body.contains("ter:NotAuthorized") {
        s.auth.failed(peer.ip(), Instant::now());
        tracing::warn!(client = %peer.ip(), "ONVIF request with a wrong user or password");
    }
    (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/soap+xml; charset=utf-8")],
        answer.body,
    )
        .into_response()
}

/// The user and password of an `Authorization: Basic` header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// `GET /onvif/snapshot.jpg`: the latest snapshot for ONVIF clients.
pub async fn snapshot(
    State(s): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(onvif) = &s.onvif else {
        return off();
    };
    if let Some(wait) = s.auth.blocked(peer.ip(), Instant::now()) {
        return super::auth::too_many(wait);
    }
    let allowed = match basic(&headers) {
        Some((user, password)) => onvif.basic_ok(&user, &password),
        None => onvif.credentials.is_none(),
    };
    if !allowed {
        if basic(&headers).is_some() {
            s.auth.failed(peer.ip(), Instant::now());
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"edgecam\"")],
            "the camera's RTSP/ONVIF user and password are needed\n",
        )
            .into_response();
    }
    super::snapshot::latest(State(s)).await
}
