//! The local HTTP server: health, metrics, the latest snapshot, commands, clips, the
//! viewer page and LAN signaling, all behind one authentication (`auth`).

mod api;
mod areas;
pub mod auth;
pub mod https;
mod onvif;
pub mod origin;
mod serve;
mod snapshot;
mod state;
mod throttle;

pub use serve::{Limits, HEADER_TIMEOUT};
pub use state::WebState;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::live::lan::{self, SignalingQuery};

/// `/healthz` fails when no frame arrived for this long.
pub const HEALTHY_FRAME_AGE: Duration = Duration::from_secs(5);

/// The viewer page: plain HTML and JavaScript, no build step.
const VIEWER_PAGE: &str = include_str!("viewer.html");

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(viewer_page))
        .route("/api/live", get(live_status))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/snapshot.jpg", get(snapshot::latest))
        .route("/api/commands", axum::routing::post(api::command))
        .route("/api/clips", get(api::clips))
        .route("/api/clips/{file}", get(api::clip))
        .route("/api/areas", get(areas::get_areas).put(areas::put_areas))
        .route("/signaling", get(signaling))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", axum::routing::post(auth::logout))
        .route("/onvif/device_service", axum::routing::post(onvif::service))
        .route("/onvif/media_service", axum::routing::post(onvif::service))
        .route("/onvif/events_service", axum::routing::post(onvif::service))
        .route(
            "/onvif/subscription/{id}",
            axum::routing::post(onvif::subscription),
        )
        .route("/onvif/snapshot.jpg", get(onvif::snapshot))
        .fallback(not_found)
        // Over every route and the fallback: a route added later is protected too.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.auth),
            auth::require,
        ))
        // Outermost: other pages' requests are refused before anything else.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.hosts),
            origin::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::commands::MAX_REQUEST_BYTES,
        ))
        .with_state(state)
}

/// Serves until `cancel` fires, then finishes in-flight requests; HTTPS when `tls` is
/// given.
pub async fn serve(
    listener: TcpListener,
    state: WebState,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let metrics = state.metrics.web.clone();
    serve::run(listener, router(state), tls, limits, metrics, cancel).await
}

/// The health verdict for a frame age (pure, so it is testable without a clock).
pub fn health(age: Option<Duration>) -> (StatusCode, String) {
    match age {
        Some(age) if age <= HEALTHY_FRAME_AGE => (StatusCode::OK, "ok: frames flowing\n".into()),
        Some(age) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: no frame for {:.1} s\n", age.as_secs_f64()),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unhealthy: no frame captured yet\n".into(),
        ),
    }
}

async fn healthz(State(s): State<WebState>) -> impl IntoResponse {
    health(s.heartbeat.age(Instant::now()))
}

async fn metrics(State(s): State<WebState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn viewer_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        VIEWER_PAGE,
    )
}

/// `GET /api/live`: viewers, what the motion detector sees (for the page's indicator),
/// the objects in view and the zones and masks.
async fn live_status(State(s): State<WebState>) -> impl IntoResponse {
    let viewers = *s.viewers.borrow();
    let status = s.commands.status().borrow().clone();
    axum::Json(serde_json::json!({
        "viewers": viewers,
        "max_viewers": s.max_viewers,
        "lan_signaling": s.lan.is_some(),
        "motion": {
            "detect": status.detect,
            "moving": status.motion,
            "score": status.motion_score,
        },
        // What the page draws over the picture: the objects in view and the areas.
        "objects": status.seen,
        "areas": s.commands.areas().map(|a| a.current()),
        "talk": talk_status(s.talk.as_ref()),
    }))
}

/// `{"speaker","talking","talker"}` for the viewer page's push-to-talk.
fn talk_status(talk: Option<&watch::Receiver<crate::speaker::TalkState>>) -> serde_json::Value {
    let state = talk.map(|t| t.borrow().clone()).unwrap_or_default();
    serde_json::json!({
        "speaker": talk.is_some(),
        "talking": state.talking,
        "talker": state.talker,
    })
}

async fn signaling(
    ws: axum::extract::ws::WebSocketUpgrade,
    query: axum::extract::Query<SignalingQuery>,
    State(s): State<WebState>,
) -> Response {
    match s.lan {
        Some(l) => lan::handler(ws, query, State(l)).await,
        None => (
            StatusCode::NOT_FOUND,
            "LAN signaling is off (live.enabled = false or live.signaling = \"kvs\")\n",
        )
            .into_response(),
    }
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_frame_age() {
        assert_eq!(health(Some(Duration::from_secs(1))).0, StatusCode::OK);
        let (code, body) = health(Some(Duration::from_secs(9)));
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("9.0 s"), "{body}");
        assert_eq!(health(None).0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
