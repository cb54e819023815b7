//! `/api/areas`: the zones, privacy masks and motion masks, read and changed (the viewer
//! page draws and edits them). A change is checked like the config file, kept in the
//! data directory and applied without a restart (`control::areas`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::api::error;
use super::WebState;
use crate::control::areas::AreasError;
use crate::events::Areas;

/// `GET /api/areas`: `{"zones":[{"name","polygon","labels"}],"privacy_masks":[…],
/// "motion_masks":[…]}`, polygons as `[[x, y], …]` picture fractions.
pub async fn get_areas(State(s): State<WebState>) -> Response {
    match s.commands.areas() {
        Some(areas) => Json(areas.current()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "zones and masks cannot be changed here",
        ),
    }
}

/// `PUT /api/areas`: the same shape in (every key replaces the one in force), the areas
/// now in force out; 400 with every problem when they break the config's rules.
pub async fn put_areas(State(s): State<WebState>, body: Bytes) -> Response {
    let Some(handle) = s.commands.areas() else {
        return error(
            StatusCode::NOT_FOUND,
            "zones and masks cannot be changed here",
        );
    };
    let areas: Areas = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not areas: {e}")),
    };
    match handle.set(areas).await {
        Ok(now) => Json(now).into_response(),
        Err(AreasError::Invalid(problems)) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "ok": false,
                "error": problems.join("; "),
                "problems": problems,
            })),
        )
            .into_response(),
        Err(e @ AreasError::Write { .. }) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
