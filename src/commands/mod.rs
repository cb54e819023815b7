//! The one command set (record, detect, snapshot, status, playback) shared by the HTTP API, the CLI,
//! MQTT and the WebRTC data channel: one JSON shape for requests and one for replies.
//!
//! Request: `{"command":"record","duration_s":30,"label":"doorbell","id":"optional"}`.
//! Reply:   `{"id":…,"command":"record","ok":true,"result":{…}}` or
//!          `{"id":…,"command":"record","ok":false,"error":"…"}`.

mod reply;

use serde::Deserialize;
use serde_json::{Map, Value};

pub use reply::{
    AudioReport, CommandError, MotionReport, ObjectsReport, Outcome, PlaybackUrl, Reply,
    RtspReport, StatusReport,
};

/// Longest timed recording a command may ask for.
pub const MAX_RECORD_S: f64 = 3600.0;
/// Longest label accepted.
pub const MAX_LABEL_LEN: usize = 64;
/// Largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// A validated command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start (or extend) a recording, or stop the open one.
    Record(Record),
    /// Turn motion detection on or off (persisted).
    Detect { enabled: bool },
    /// The latest snapshot.
    Snapshot,
    /// Recording state, detection, storage.
    Status,
    /// An HLS URL to watch an event (or, without one, the live stream) from the cloud.
    Playback {
        event_id: Option<String>,
        expires_s: u32,
    },
    /// Take (`start`) or give up (`stop`) the speaker: live viewers only (data channel).
    Talk { start: bool, name: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Start {
        duration_s: Option<f64>,
        label: String,
    },
    Stop,
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Record(_) => "record",
            Self::Detect { .. } => "detect",
            Self::Snapshot => "snapshot",
            Self::Status => "status",
            Self::Playback { .. } => "playback",
            Self::Talk { .. } => "talk",
        }
    }
}

/// A parsed request: the caller's correlation id and the command.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<String>,
    pub command: Command,
}

/// Why a request was refused; the message is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    pub id: Option<String>,
    pub command: Option<String>,
    pub message: String,
}

const KNOWN: &str = "record, detect, snapshot, status, playback, talk";
/// Longest name a talker may give.
const MAX_NAME_LEN: usize = 40;

/// Parses a request body. `command` may also come from the transport (an MQTT topic
/// `…/cmd/<name>`), in which case the body need not name it.
pub fn parse(body: &[u8], command_from_transport: Option<&str>) -> Result<Request, BadRequest> {
    let fail = |id: Option<String>, command: Option<String>, message: String| BadRequest {
        id,
        command,
        message,
    };
    if body.len() > MAX_REQUEST_BYTES {
        return Err(fail(
            None,
            None,
            format!(
                "request too large: {} bytes (limit {MAX_REQUEST_BYTES})",
                body.len()
            ),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| fail(None, None, format!("malformed JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(fail(
            None,
            None,
            "the request must be a JSON object such as {\"command\":\"status\"}".into(),
        ));
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 128 => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(fail(
                None,
                None,
                "\"id\" must be a string of at most 128 characters".into(),
            ))
        }
    };
    let name = match (obj.remove("command"), command_from_transport) {
        (Some(Value::String(s)), _) => s,
        (None, Some(t)) => t.to_owned(),
        (Some(_), _) => return Err(fail(id, None, "\"command\" must be a string".into())),
        (None, None) => {
            return Err(fail(
                id,
                None,
                format!("missing \"command\"; one of: {KNOWN}"),
            ))
        }
    };
    let command =
        build(&name, obj).map_err(|message| fail(id.clone(), Some(name.clone()), message))?;
    Ok(Request { id, command })
}

fn build(name: &str, obj: Map<String, Value>) -> Result<Command, String> {
    match name {
        "record" => {
            let args: RecordArgs = args(name, obj)?;
            record(args).map(Command::Record)
        }
        "detect" => {
            let args: DetectArgs = args(name, obj)?;
            Ok(Command::Detect {
                enabled: args.enabled,
            })
        }
        "snapshot" => args::<NoArgs>(name, obj).map(|_| Command::Snapshot),
        "status" => args::<NoArgs>(name, obj).map(|_| Command::Status),
        "playback" => {
            let a: PlaybackArgs = args(name, obj)?;
            if let Some(id) = &a.event_id {
                if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    return Err("playback: event_id must be an event id such as 01JC…".into());
                }
            }
            let expires_s = a.expires_s.unwrap_or(3600);
            if !(300..=43_200).contains(&expires_s) {
                return Err(format!(
                    "playback: expires_s must be between 300 and 43200, got {expires_s}"
                ));
            }
            Ok(Command::Playback {
                event_id: a.event_id,
                expires_s,
            })
        }
        "talk" => {
            let a: TalkArgs = args(name, obj)?;
            let start = match a.action.as_str() {
                "start" => true,
                "stop" => false,
                other => {
                    return Err(format!(
                        "talk: action must be \"start\" or \"stop\", got {other:?}"
                    ))
                }
            };
            if let Some(n) = &a.name {
                if n.is_empty()
                    || n.chars().count() > MAX_NAME_LEN
                    || n.chars().any(char::is_control)
                {
                    return Err(format!(
                        "talk: name must be 1 to {MAX_NAME_LEN} printable characters"
                    ));
                }
            }
            Ok(Command::Talk {
                start,
                name: a.name,
            })
        }
        other => Err(format!("unknown command {other:?}; one of: {KNOWN}")),
    }
}

fn args<T: serde::de::DeserializeOwned>(name: &str, obj: Map<String, Value>) -> Result<T, String> {
    serde_json::from_value(Value::Object(obj)).map_err(|e| format!("{name}: {e}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TalkArgs {
    action: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectArgs {
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaybackArgs {
    /// None = the live stream.
    #[serde(default)]
    event_id: Option<String>,
    #[serde(default)]
    expires_s: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordArgs {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    duration_s: Option<f64>,
    #[serde(default)]
    label: Option<String>,
}

fn record(a: RecordArgs) -> Result<Record, String> {
    match a.action.as_deref().unwrap_or("start") {
        "stop" => {
            if a.duration_s.is_some() || a.label.is_some() {
                return Err("record: \"stop\" takes no duration_s or label".into());
            }
            Ok(Record::Stop)
        }
        "start" => {
            if let Some(d) = a.duration_s {
                if !(d.is_finite() && d > 0.0 && d <= MAX_RECORD_S) {
                    return Err(format!("record: duration_s must be more than 0 and at most {MAX_RECORD_S}, got {d}"));
                }
            }
            let label = a.label.unwrap_or_default();
            if label.chars().count() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
                return Err(format!(
                    "record: label must be at most {MAX_LABEL_LEN} printable characters"
                ));
            }
            Ok(Record::Start {
                duration_s: a.duration_s,
                label,
            })
        }
        other => Err(format!(
            "record: action must be \"start\" or \"stop\", got {other:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Request {
        parse(body.as_bytes(), None).unwrap()
    }

    fn err(body: &str) -> String {
        parse(body.as_bytes(), None).unwrap_err().message
    }

    #[test]
    fn talk_takes_an_action_and_an_optional_name() {
        assert_eq!(
            ok(r#"{"command":"talk","action":"start","name":"Dad"}"#).command,
            Command::Talk {
                start: true,
                name: Some("Dad".into())
            }
        );
        assert_eq!(
            ok(r#"{"command":"talk","action":"stop"}"#).command,
            Command::Talk {
                start: false,
                name: None
            }
        );
        assert!(err(r#"{"command":"talk","action":"shout"}"#).contains("start"));
        assert!(err(r#"{"command":"talk"}"#).contains("action"));
        assert!(err(r#"{"command":"talk","action":"start","name":"a\nb"}"#).contains("name"));
    }

    #[test]
    fn playback_takes_an_event_id_and_an_expiry() {
        assert_eq!(
            ok(r#"{"command":"playback","event_id":"01JCEVENT","id":"p"}"#).command,
            Command::Playback {
                event_id: Some("01JCEVENT".into()),
                expires_s: 3600
            }
        );
        assert_eq!(
            ok(r#"{"command":"playback","expires_s":300}"#).command,
            Command::Playback {
                event_id: None,
                expires_s: 300
            },
            "no event: the live stream"
        );
        assert!(err(r#"{"command":"playback","expires_s":60}"#).contains("300"));
        assert!(err(r#"{"command":"playback","event_id":"../x"}"#).contains("event_id"));
        assert!(err(r#"{"command":"playback","event_id":7}"#).contains("playback"));
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(
            ok(r#"{"command":"record","duration_s":30,"label":"doorbell","id":"a1"}"#),
            Request {
                id: Some("a1".into()),
                command: Command::Record(Record::Start {
                    duration_s: Some(30.0),
                    label: "doorbell".into()
                })
            }
        );
        assert_eq!(
            ok(r#"{"command":"record","action":"stop"}"#).command,
            Command::Record(Record::Stop)
        );
        assert_eq!(
            ok(r#"{"command":"detect","enabled":false}"#).command,
            Command::Detect { enabled: false }
        );
        assert_eq!(ok(r#"{"command":"snapshot"}"#).command, Command::Snapshot);
        assert_eq!(
            ok(r#"{"command":"status","id":7}"#).id.as_deref(),
            Some("7")
        );
    }

    #[test]
    fn command_may_come_from_the_transport() {
        let r = parse(br#"{"id":"x","enabled":true}"#, Some("detect")).unwrap();
        assert_eq!(r.command, Command::Detect { enabled: true });
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(err("{not json").starts_with("malformed JSON"));
        assert!(err("[1,2]").contains("JSON object"));
        assert!(err("{}").contains("missing \"command\""));
        assert_eq!(
            err(r#"{"command":"fly"}"#),
            "unknown command \"fly\"; one of: record, detect, snapshot, status, playback, talk"
        );
        assert!(err(r#"{"command":"record","duration_s":-5}"#)
            .contains("duration_s must be more than 0"));
        assert!(
            err(r#"{"command":"record","duration_s":"long"}"#).starts_with("record: invalid type")
        );
        assert!(err(r#"{"command":"record","colour":"red"}"#).contains("unknown field `colour`"));
        assert!(err(r#"{"command":"detect"}"#).contains("missing field `enabled`"));
        assert!(err(r#"{"command":"record","action":"pause"}"#).contains("\"start\" or \"stop\""));
        let huge = format!(
            r#"{{"command":"status","pad":"{}"}}"#,
            "x".repeat(MAX_REQUEST_BYTES)
        );
        assert!(err(&huge).contains("too large"));
    }

    #[test]
    fn bad_request_reply_keeps_the_id() {
        let bad = parse(br#"{"id":"q","command":"record","duration_s":0}"#, None).unwrap_err();
        let reply = serde_json::to_value(Reply::bad_request(&bad)).unwrap();
        assert_eq!(reply["id"], "q");
        assert_eq!(reply["command"], "record");
        assert_eq!(reply["ok"], false);
    }
}
