//! The latest snapshot as a JPEG response.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::WebState;

/// `GET /api/snapshot.jpg` (and ONVIF's snapshot URI): the latest JPEG.
pub async fn latest(State(s): State<WebState>) -> Response {
    let latest = s.snapshot.borrow().clone();
    match latest {
        Some(snap) => (
            [
                (header::CONTENT_TYPE, "image/jpeg".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (
                    header::LAST_MODIFIED,
                    snap.captured_at
                        .format("%a, %d %b %Y %H:%M:%S GMT")
                        .to_string(),
                ),
            ],
            snap.jpeg,
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot yet: the camera has not produced one\n",
        )
            .into_response(),
    }
}
