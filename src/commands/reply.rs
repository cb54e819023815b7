//! What a command answers: a typed outcome per command, or an error meant for the person
//! who sent it, and the one JSON reply shape every transport sends.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BadRequest, Request};

/// A command's result. Each variant serializes to the `result` object of the reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    /// `record` (start): the event now open.
    Recording {
        recording: bool,
        event_id: Option<String>,
    },
    /// `record` with `"action":"stop"`: the event that was ended, if any.
    Stopped {
        recording: bool,
        stopped_event_id: Option<String>,
    },
    /// `detect`: the setting now in force.
    Detect {
        detect: bool,
    },
    /// `snapshot` over HTTP or the data channel: where to fetch the image.
    Snapshot {
        captured_at: DateTime<Utc>,
        bytes: usize,
        url: &'static str,
    },
    /// `snapshot` over MQTT: the image went to `topic`.
    SnapshotPublished {
        topic: String,
        bytes: usize,
        captured_at: DateTime<Utc>,
    },
    Status(StatusReport),
    Playback(PlaybackUrl),
    /// `talk`: whether the asker now holds the speaker.
    Talk {
        talking: bool,
    },
    /// New zones and masks: those now in force.
    Areas(crate::events::Areas),
}

/// The `status` command's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    pub recording: bool,
    pub event_id: Option<String>,
    pub detect: bool,
    pub pre_roll_s: f64,
    pub pre_roll_bytes: usize,
    pub open_clips: usize,
    pub frames_lost: u64,
    pub audio: AudioReport,
    pub motion: MotionReport,
    pub objects: ObjectsReport,
    pub rtsp: RtspReport,
}

/// What the object detector sees now: whether it runs, whether objects (rather than
/// motion) open events, and the objects in view by label (announced ones, seen in the
/// last picture analysed) and by `[[zones]]` zone (those that matter there).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObjectsReport {
    pub enabled: bool,
    /// The model file in use (none while the detector is off).
    pub model: Option<String>,
    pub trigger: &'static str,
    pub present: std::collections::BTreeMap<String, u32>,
    pub zones: std::collections::BTreeMap<String, u32>,
}

/// What the motion detector sees now, against what it needs: `score` is the percentage
/// of the picture moving in the last analysis frame, motion when it reaches
/// `min_area_percent`; `threshold` is the brightness change a pixel needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MotionReport {
    pub moving: bool,
    pub score: f32,
    pub min_area_percent: f32,
    pub threshold: u8,
}

/// Whether sound is captured: `enabled` (the config and pipeline file give an audio
/// part) and `flowing` (its frames arrive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioReport {
    pub enabled: bool,
    pub flowing: bool,
}

/// The RTSP server: whether it runs, its URL (without credentials), and its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtspReport {
    pub enabled: bool,
    /// `rtsp://host:port/path`; the host is the listen address (`0.0.0.0` when it
    /// listens on every address: use the camera's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// RTSP connections open now.
    pub clients: u64,
    /// Sessions set up to receive the stream now.
    pub sessions: u64,
    /// RTP bytes handed to clients since start.
    pub bytes: u64,
}

/// The `playback` command's answer: an HLS URL of the camera's KVS stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybackUrl {
    pub url: String,
    pub stream: String,
    pub expires_s: u32,
    /// None: the live stream.
    pub event_id: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// Why a valid command could not be carried out; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the recorder is not running")]
    RecorderStopped,
    #[error("the recorder stopped before answering")]
    NoAnswer,
    #[error("no snapshot yet: the camera has not produced one")]
    NoSnapshot,
    #[error("snapshot too large and could not be scaled: {0}")]
    SnapshotScaling(String),
    #[error("the MQTT session is closing")]
    Closing,
    #[error("cloud playback is off: set [upload] enabled = true")]
    PlaybackOff,
    #[error("no event {0} with clips on this camera")]
    NoSuchEvent(String),
    #[error("cloud playback: {0}")]
    Cloud(String),
    #[error("{0}")]
    Index(String),
    #[error("talk works only from a live viewer (its data channel), which sends the audio")]
    TalkViewerOnly,
    #[error("this camera has no speaker: set [audio] speaker = true")]
    NoSpeaker,
    #[error("{0}")]
    Talk(String),
}

/// The reply to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    pub fn ok(req: &Request, outcome: &Outcome) -> Self {
        Self {
            id: req.id.clone(),
            command: Some(req.command.name().into()),
            ok: true,
            result: serde_json::to_value(outcome).ok(),
            error: None,
        }
    }

    pub fn error(req: &Request, error: &CommandError) -> Self {
        Self {
            id: req.id.clone(),
            command: Some(req.command.name().into()),
            ok: false,
            result: None,
            error: Some(error.to_string()),
        }
    }

    /// The reply to a request that was valid on its own but cannot be run as sent.
    pub fn refused(req: &Request, message: impl Into<String>) -> Self {
        Self {
            id: req.id.clone(),
            command: Some(req.command.name().into()),
            ok: false,
            result: None,
            error: Some(message.into()),
        }
    }

    /// Either of the above.
    pub fn of(req: &Request, result: &Result<Outcome, CommandError>) -> Self {
        match result {
            Ok(outcome) => Self::ok(req, outcome),
            Err(e) => Self::error(req, e),
        }
    }

    pub fn bad_request(bad: &BadRequest) -> Self {
        Self {
            id: bad.id.clone(),
            command: bad.command.clone(),
            ok: false,
            result: None,
            error: Some(bad.message.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::Command;
    use serde_json::json;

    #[test]
    fn outcomes_serialize_to_the_documented_result_objects() {
        let req = Request {
            id: Some("42".into()),
            command: Command::Status,
        };
        let at = DateTime::<Utc>::from_timestamp_millis(1_764_000_000_123).unwrap();
        let cases = [
            (
                Outcome::Recording {
                    recording: true,
                    event_id: Some("01E".into()),
                },
                json!({"recording": true, "event_id": "01E"}),
            ),
            (
                Outcome::Stopped {
                    recording: false,
                    stopped_event_id: None,
                },
                json!({"recording": false, "stopped_event_id": null}),
            ),
            (Outcome::Detect { detect: false }, json!({"detect": false})),
            (
                Outcome::Snapshot {
                    captured_at: at,
                    bytes: 7,
                    url: "/api/snapshot.jpg",
                },
                json!({"captured_at": at, "bytes": 7, "url": "/api/snapshot.jpg"}),
            ),
        ];
        for (outcome, want) in cases {
            let reply = serde_json::to_value(Reply::ok(&req, &outcome)).unwrap();
            assert_eq!(reply["result"], want);
            assert_eq!(reply["ok"], true);
            assert_eq!(reply["id"], "42");
        }
        let failed = serde_json::to_value(Reply::error(&req, &CommandError::NoSnapshot)).unwrap();
        assert_eq!(
            failed,
            json!({"id": "42", "command": "status", "ok": false,
                   "error": "no snapshot yet: the camera has not produced one"})
        );
    }
}
