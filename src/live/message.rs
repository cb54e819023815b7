//! Signaling messages in KVS WebRTC's JSON shapes, used by both transports (KVS WSS and
//! the LAN WebSocket). Pure parsing and building; never panics on input.
//!
//! Received by the master: `{"senderClientId","messageType","messagePayload"}` with
//! `messagePayload` = base64(JSON). Sent by the master: `{"action","recipientClientId",
//! "messagePayload","correlationId"}`. A LAN viewer sends `{"action","messagePayload"}`
//! and receives `{"messageType","messagePayload","senderClientId"}`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Largest signaling message accepted, in bytes (an SDP offer is a few KB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// KVS limit on a sent payload (before base64).
pub const MAX_PAYLOAD_BYTES: usize = 10 * 1024;
/// Longest client id accepted (KVS allows 256).
pub const MAX_CLIENT_ID: usize = 256;

/// An ICE candidate as the browser's `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// What the master can receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Offer {
        from: String,
        sdp: String,
    },
    Candidate {
        from: String,
        candidate: Candidate,
    },
    /// LAN: the viewer's signaling socket closed. A viewer that leaves before its peer
    /// connection is up is gone (a page closed or reloaded mid-connect).
    Left {
        from: String,
    },
    /// KVS: the connection will close; reconnect.
    GoAway,
    /// KVS: fetch fresh ICE servers.
    ReconnectIceServer,
    /// KVS: the service refused a message we sent.
    Status {
        description: String,
    },
}

/// What the master sends to one viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Answer {
        to: String,
        sdp: String,
    },
    Candidate {
        to: String,
        candidate: Candidate,
    },
    /// LAN only: tell a viewer why it is refused (KVS has no such message).
    Refused {
        to: String,
        reason: String,
    },
}

impl Outbound {
    pub fn recipient(&self) -> &str {
        match self {
            Self::Answer { to, .. } | Self::Candidate { to, .. } | Self::Refused { to, .. } => to,
        }
    }
}

/// Why a message was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("missing or invalid field {0}")]
    Field(&'static str),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("messagePayload is not base64")]
    Base64,
    #[error("payload: {0}")]
    Payload(String),
}

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a str, MessageError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or(MessageError::Field(name))
}

fn decode_payload(v: &Value) -> Result<Value, MessageError> {
    let b64 = field(v, "messagePayload")?;
    let raw = B64.decode(b64.trim()).map_err(|_| MessageError::Base64)?;
    serde_json::from_slice(&raw).map_err(|e| MessageError::Payload(e.to_string()))
}

fn parse_json(text: &str) -> Result<Value, MessageError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(MessageError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| MessageError::Json(e.to_string()))
}

/// A message type plus its payload, from either shape.
fn inbound(kind: &str, from: String, v: &Value) -> Result<Inbound, MessageError> {
    if from.len() > MAX_CLIENT_ID {
        return Err(MessageError::Field("senderClientId"));
    }
    match kind {
        "SDP_OFFER" => {
            let p = decode_payload(v)?;
            if p.get("type").and_then(Value::as_str) != Some("offer") {
                return Err(MessageError::Payload(
                    "an SDP_OFFER payload has type \"offer\"".into(),
                ));
            }
            let sdp = p
                .get("sdp")
                .and_then(Value::as_str)
                .ok_or(MessageError::Payload("no sdp".into()))?;
            if !sdp.starts_with("v=0") {
                return Err(MessageError::Payload("sdp does not start with v=0".into()));
            }
            Ok(Inbound::Offer {
                from,
                sdp: sdp.to_owned(),
            })
        }
        "ICE_CANDIDATE" => {
            let candidate: Candidate = serde_json::from_value(decode_payload(v)?)
                .map_err(|e| MessageError::Payload(e.to_string()))?;
            Ok(Inbound::Candidate { from, candidate })
        }
        "GO_AWAY" => Ok(Inbound::GoAway),
        "RECONNECT_ICE_SERVER" => Ok(Inbound::ReconnectIceServer),
        "STATUS_RESPONSE" => Ok(Inbound::Status {
            description: v
                .get("statusResponse")
                .map(Value::to_string)
                .unwrap_or_default(),
        }),
        other => Err(MessageError::UnknownType(other.chars().take(64).collect())),
    }
}

/// Parses a message as KVS delivers it to the master.
pub fn parse_kvs(text: &str) -> Result<Inbound, MessageError> {
    let v = parse_json(text)?;
    let kind = field(&v, "messageType")?;
    let from = v
        .get("senderClientId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    inbound(kind, from, &v)
}

/// Parses what a LAN viewer sends (`action` + `messagePayload`); `client_id` is the
/// viewer's socket's id. Only offers and candidates are accepted from viewers.
pub fn parse_viewer(text: &str, client_id: &str) -> Result<Inbound, MessageError> {
    let v = parse_json(text)?;
    match field(&v, "action")? {
        kind @ ("SDP_OFFER" | "ICE_CANDIDATE") => inbound(kind, client_id.to_owned(), &v),
        other => Err(MessageError::UnknownType(other.chars().take(64).collect())),
    }
}

fn encode_payload(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn payload_of(m: &Outbound) -> (&'static str, Value) {
    match m {
        Outbound::Answer { sdp, .. } => ("SDP_ANSWER", json!({ "type": "answer", "sdp": sdp })),
        Outbound::Candidate { candidate, .. } => ("ICE_CANDIDATE", json!(candidate)),
        Outbound::Refused { reason, .. } => ("STATUS_RESPONSE", json!({ "description": reason })),
    }
}

/// The KVS send shape. `None` for messages KVS has no use for (`Refused`) or whose
/// payload exceeds KVS's 10 KB limit.
pub fn to_kvs(m: &Outbound, correlation_id: &str) -> Option<String> {
    let (action, payload) = payload_of(m);
    if matches!(m, Outbound::Refused { .. }) || payload.to_string().len() > MAX_PAYLOAD_BYTES {
        return None;
    }
    Some(
        json!({
            "action": action,
            "recipientClientId": m.recipient(),
            "messagePayload": encode_payload(&payload),
            "correlationId": correlation_id,
        })
        .to_string(),
    )
}

/// What a LAN viewer receives.
pub fn to_viewer(m: &Outbound) -> String {
    let (kind, payload) = payload_of(m);
    let mut v = json!({ "messageType": kind, "messagePayload": encode_payload(&payload), "senderClientId": "" });
    if let Outbound::Refused { reason, .. } = m {
        v["statusResponse"] = json!({ "errorType": "Refused", "description": reason });
    }
    v.to_string()
}

/// A LAN viewer's message, as a test viewer or the viewer page builds it.
pub fn from_viewer(action: &str, payload: &Value) -> String {
    json!({ "action": action, "messagePayload": encode_payload(payload) }).to_string()
}

/// Decodes the payload of a message a viewer received (for test viewers).
pub fn viewer_payload(text: &str) -> Result<(String, Value), MessageError> {
    let v = parse_json(text)?;
    Ok((field(&v, "messageType")?.to_owned(), decode_payload(&v)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        B64.encode(s)
    }

    #[test]
    fn parses_a_kvs_offer_and_candidate() {
        let offer = format!(
            r#"{{"senderClientId":"phone-1","messageType":"SDP_OFFER","messagePayload":"{}"}}"#,
            b64(r#"{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}"#)
        );
        assert_eq!(
            parse_kvs(&offer).unwrap(),
            Inbound::Offer {
                from: "phone-1".into(),
                sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".into()
            }
        );
        let cand = format!(
            r#"{{"senderClientId":"phone-1","messageType":"ICE_CANDIDATE","messagePayload":"{}"}}"#,
            b64(
                r#"{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0}"#
            )
        );
        let Inbound::Candidate { from, candidate } = parse_kvs(&cand).unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                from.as_str(),
                candidate.sdp_mid.as_deref(),
                candidate.sdp_mline_index
            ),
            ("phone-1", Some("0"), Some(0))
        );
        assert_eq!(
            parse_kvs(r#"{"messageType":"GO_AWAY"}"#).unwrap(),
            Inbound::GoAway
        );
    }

    #[test]
    fn builds_the_kvs_send_shape() {
        let m = Outbound::Answer {
            to: "phone-1".into(),
            sdp: "v=0\r\n".into(),
        };
        let v: Value = serde_json::from_str(&to_kvs(&m, "c1").unwrap()).unwrap();
        assert_eq!(v["action"], "SDP_ANSWER");
        assert_eq!(v["recipientClientId"], "phone-1");
        assert_eq!(v["correlationId"], "c1");
        let payload: Value =
            serde_json::from_slice(&B64.decode(v["messagePayload"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(payload, json!({"type": "answer", "sdp": "v=0\r\n"}));
        let big = Outbound::Answer {
            to: "x".into(),
            sdp: "a".repeat(MAX_PAYLOAD_BYTES),
        };
        assert_eq!(to_kvs(&big, "c"), None, "KVS refuses payloads over 10 KB");
    }

    #[test]
    fn viewer_round_trip() {
        let text = from_viewer("SDP_OFFER", &json!({"type": "offer", "sdp": "v=0\r\n"}));
        assert_eq!(
            parse_viewer(&text, "lan-7").unwrap(),
            Inbound::Offer {
                from: "lan-7".into(),
                sdp: "v=0\r\n".into()
            }
        );
        let reply = to_viewer(&Outbound::Refused {
            to: "lan-7".into(),
            reason: "full".into(),
        });
        let (kind, payload) = viewer_payload(&reply).unwrap();
        assert_eq!(
            (kind.as_str(), payload["description"].as_str()),
            ("STATUS_RESPONSE", Some("full"))
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases = [
            ("{", "malformed"),
            ("[]", "messageType"),
            (r#"{"messageType":"DANCE"}"#, "unknown"),
            (
                r#"{"messageType":"SDP_OFFER","messagePayload":"!!!"}"#,
                "base64",
            ),
            (
                r#"{"messageType":"SDP_OFFER","messagePayload":"aGVsbG8="}"#,
                "payload",
            ),
            (r#"{"messageType":"SDP_OFFER"}"#, "messagePayload"),
        ];
        for (text, says) in cases {
            let err = parse_kvs(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        let garbage = format!(
            r#"{{"messageType":"SDP_OFFER","messagePayload":"{}"}}"#,
            b64(r#"{"type":"offer","sdp":"garbage"}"#)
        );
        assert!(parse_kvs(&garbage).is_err());
        assert!(matches!(
            parse_kvs(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(MessageError::TooLarge(_))
        ));
        assert!(
            parse_viewer(r#"{"action":"GO_AWAY"}"#, "v").is_err(),
            "viewers cannot send service messages"
        );
    }
}

/// Mutation fuzzing on stable Rust: thousands of corrupted variants of real messages must
/// parse to `Ok` or `Err`, never panic. (`fuzz/` holds the same as a cargo-fuzz target.)
#[cfg(test)]
mod fuzz {
    use super::*;

    fn seeds() -> Vec<String> {
        let offer = B64.encode(r#"{"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}"#);
        let cand = B64.encode(r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 5 typ host","sdpMid":"0","sdpMLineIndex":0}"#);
        vec![
            format!(
                r#"{{"senderClientId":"a","messageType":"SDP_OFFER","messagePayload":"{offer}"}}"#
            ),
            format!(
                r#"{{"senderClientId":"a","messageType":"ICE_CANDIDATE","messagePayload":"{cand}"}}"#
            ),
            format!(r#"{{"action":"SDP_OFFER","messagePayload":"{offer}"}}"#),
            r#"{"messageType":"STATUS_RESPONSE","statusResponse":{"statusCode":"400"}}"#.into(),
            r#"{"messageType":"GO_AWAY"}"#.into(),
        ]
    }

    fn mutate(rng: &mut fastrand::Rng, s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        for _ in 0..rng.usize(1..8) {
            if b.is_empty() {
                break;
            }
            let i = rng.usize(..b.len());
            match rng.u8(..4) {
                0 => b[i] = rng.u8(..),
                1 => {
                    b.remove(i);
                }
                2 => b.insert(i, rng.u8(..)),
                _ => b.truncate(i),
            }
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    #[test]
    fn mutated_messages_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0xed6ecad);
        let seeds = seeds();
        for round in 0..20_000 {
            let input = mutate(&mut rng, &seeds[round % seeds.len()]);
            let _ = parse_kvs(&input);
            let _ = parse_viewer(&input, "fuzz");
            let _ = viewer_payload(&input);
        }
    }
}
