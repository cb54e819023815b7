//! `/api/…`: commands (the shared command set) and clips.

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::WebState;
use crate::commands::{self, CommandError, Reply};
use crate::events::TriggerKind;
use crate::index::{ClipStatus, IndexError};

#[derive(Debug, Deserialize)]
pub struct CommandQuery {
    /// `cli` when `edgecam trigger` sends the command.
    source: Option<String>,
}

/// `POST /api/commands`: `{"command": …}` in, `{"ok": …}` out.
pub async fn command(
    State(s): State<WebState>,
    Query(q): Query<CommandQuery>,
    body: Bytes,
) -> Response {
    let request = match commands::parse(&body, None) {
        Ok(r) => r,
        Err(bad) => {
            return (StatusCode::BAD_REQUEST, Json(Reply::bad_request(&bad))).into_response()
        }
    };
    let source = match q.source.as_deref() {
        Some("cli") => TriggerKind::Cli,
        _ => TriggerKind::Http,
    };
    match s.commands.execute(source, request.command.clone()).await {
        Ok(outcome) => Json(Reply::ok(&request, &outcome)).into_response(),
        Err(e) => (status_of(&e), Json(Reply::error(&request, &e))).into_response(),
    }
}

/// The HTTP status of a refused command: what the client could do about it.
fn status_of(e: &CommandError) -> StatusCode {
    match e {
        // Not now: the daemon is starting or stopping; try again.
        CommandError::RecorderStopped
        | CommandError::NoAnswer
        | CommandError::Closing
        | CommandError::NoSnapshot => StatusCode::SERVICE_UNAVAILABLE,
        CommandError::NoSuchEvent(_) => StatusCode::NOT_FOUND,
        // Someone else holds the speaker.
        CommandError::Talk(_) => StatusCode::CONFLICT,
        // Not possible from here, or on this camera as configured.
        CommandError::TalkViewerOnly | CommandError::NoSpeaker | CommandError::PlaybackOff => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        CommandError::Cloud(_) => StatusCode::BAD_GATEWAY,
        CommandError::Index(_) | CommandError::SnapshotScaling(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ClipsQuery {
    limit: Option<u32>,
    /// RFC 3339 time.
    since: Option<String>,
    /// Only events with this label (an object seen in them, or their own label).
    label: Option<String>,
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "ok": false, "error": message.into() })),
    )
        .into_response()
}

/// `GET /api/clips?limit=N&since=RFC3339&label=person`: newest first.
pub async fn clips(State(s): State<WebState>, Query(q): Query<ClipsQuery>) -> Response {
    let since = match q.since.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("since must be an RFC 3339 time: {e}"),
            )
        }
    };
    let limit = q.limit.unwrap_or(50).min(1000);
    match s.index.clips(since, q.label.as_deref(), limit).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/clips/ID` (JSON), `ID.mp4` (the video, with range requests), `ID.jpg`.
pub async fn clip(State(s): State<WebState>, Path(file): Path<String>, req: Request) -> Response {
    let (id, ext) = match file.rsplit_once('.') {
        Some((id, ext @ ("mp4" | "jpg"))) => (id, Some(ext)),
        _ => (file.as_str(), None),
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return error(
            StatusCode::BAD_REQUEST,
            "a clip id has only letters, digits and '-'",
        );
    }
    let row = match s.index.clip(id).await {
        Ok(row) if row.status != ClipStatus::Deleted => row,
        Ok(_) | Err(IndexError::NoSuchClip(_)) => {
            return error(StatusCode::NOT_FOUND, format!("no clip {id}"))
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let rel = match ext {
        None => return Json(row).into_response(),
        Some("mp4") if row.status == ClipStatus::Recording => {
            return error(StatusCode::CONFLICT, "the clip is still being recorded")
        }
        Some("mp4") => row.path,
        Some(_) => match row.thumbnail {
            Some(t) => t,
            // A clip being recorded has its thumbnail beside it already (the index
            // names it when the clip is finished).
            None if row.status == ClipStatus::Recording => {
                let file = row.path.strip_suffix(".part").unwrap_or(&row.path);
                let jpg = std::path::Path::new(file).with_extension("jpg");
                jpg.to_string_lossy().into_owned()
            }
            None => return error(StatusCode::NOT_FOUND, "the clip has no thumbnail"),
        },
    };
    match ServeFile::new(s.data_dir.join(rel)).oneshot(req).await {
        Ok(res) => res.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_whether_to_retry_fix_or_give_up() {
        let cases = [
            (CommandError::RecorderStopped, 503),
            (CommandError::NoSuchEvent("e".into()), 404),
            (CommandError::Talk("Ann is talking".into()), 409),
            (CommandError::TalkViewerOnly, 422),
            (CommandError::PlaybackOff, 422),
            (CommandError::Cloud("timeout".into()), 502),
            (CommandError::Index("disk".into()), 500),
        ];
        for (e, code) in cases {
            assert_eq!(status_of(&e).as_u16(), code, "{e}");
        }
    }
}
