//! PutMedia acknowledgements (pure): an incremental parser for the response body, whose
//! JSON acks may arrive batched in one chunk or split across chunks, and what to do with
//! each error code.
//!
//! `{"EventType":"BUFFERING"|"RECEIVED"|"PERSISTED"|"ERROR"|"IDLE",
//!   "FragmentTimecode":<ms>,"FragmentNumber":"<digits>","ErrorId":<n>,"ErrorCode":"…"}`

use serde::Deserialize;

/// Longest ack accepted; a body that grows past this without a complete ack is garbage.
const MAX_PENDING: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AckEvent {
    Buffering,
    Received,
    Persisted,
    Error,
    Idle,
}

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ack {
    #[serde(rename = "EventType")]
    pub event: AckEvent,
    /// The fragment's first timecode (ms), absent on IDLE.
    #[serde(rename = "FragmentTimecode", default)]
    pub fragment_timecode: Option<u64>,
    /// 47–48 digits: a string, never a number.
    #[serde(rename = "FragmentNumber", default)]
    pub fragment_number: Option<String>,
    #[serde(rename = "ErrorId", default)]
    pub error_id: Option<u32>,
    #[serde(rename = "ErrorCode", default)]
    pub error_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("malformed ack: {0}")]
    Malformed(String),
    #[error("over {MAX_PENDING} bytes without a complete ack")]
    TooLong,
}

/// What an ERROR ack asks of the uploader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Reconnect and resend from the first fragment not persisted.
    Reconnect,
    /// The fragment can never be accepted: drop it, log, carry on.
    SkipFragment,
    /// The stream cannot take data (missing, deleted, KMS, not authorised): stop and
    /// alert; retrying in a loop would not help.
    Stop,
}

/// The uploader's reaction to `ErrorId`.
pub fn on_error(error_id: u32) -> OnError {
    match error_id {
        4000 | 4003 | 5000 | 5001 => OnError::Reconnect,
        4001 | 4002 | 4004 | 4006 | 4007 | 4009 | 4010 | 4011 => OnError::SkipFragment,
        4008 | 4500..=4599 => OnError::Stop,
        5002..=5999 => OnError::Reconnect,
        _ => OnError::SkipFragment,
    }
}

/// Feeds response-body chunks, returns the complete acks so far.
#[derive(Debug, Default)]
pub struct AckParser {
    pending: Vec<u8>,
}

impl AckParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<Ack, AckError>> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            let Some(skip) = rest.iter().position(|b| !b.is_ascii_whitespace()) else {
                start = self.pending.len();
                break;
            };
            start += skip;
            let mut values = serde_json::Deserializer::from_slice(&self.pending[start..])
                .into_iter::<serde_json::Value>();
            match values.next() {
                Some(Ok(v)) => {
                    start += values.byte_offset();
                    out.push(
                        serde_json::from_value::<Ack>(v)
                            .map_err(|e| AckError::Malformed(e.to_string())),
                    );
                }
                // An ack cut by the chunk boundary: wait for the rest.
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    // One bad line must not stall the rest: skip past it.
                    out.push(Err(AckError::Malformed(e.to_string())));
                    match self.pending[start..].iter().position(|b| *b == b'\n') {
                        Some(p) => start += p + 1,
                        None => {
                            start = self.pending.len();
                            break;
                        }
                    }
                }
                None => break,
            }
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_PENDING {
            self.pending.clear();
            out.push(Err(AckError::TooLong));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERSISTED: &str = r#"{"EventType":"PERSISTED","FragmentTimecode":1800000000000,"FragmentNumber":"91343852333181432392682062607743920146264484424"}"#;

    fn ok(v: Vec<Result<Ack, AckError>>) -> Vec<Ack> {
        v.into_iter().map(Result::unwrap).collect()
    }

    #[test]
    fn batched_acks_in_one_chunk() {
        let mut p = AckParser::default();
        let body = format!(
            "{}\n{}\n{}\n",
            r#"{"EventType":"BUFFERING","FragmentTimecode":1800000000000}"#,
            r#"{"EventType":"RECEIVED","FragmentTimecode":1800000000000,"FragmentNumber":"1"}"#,
            PERSISTED
        );
        let acks = ok(p.push(body.as_bytes()));
        assert_eq!(
            acks.iter().map(|a| a.event).collect::<Vec<_>>(),
            [AckEvent::Buffering, AckEvent::Received, AckEvent::Persisted]
        );
        assert_eq!(
            acks[2].fragment_number.as_deref(),
            Some("91343852333181432392682062607743920146264484424"),
            "48-digit fragment numbers stay strings"
        );
    }

    #[test]
    fn an_ack_split_across_chunks_comes_out_once_whole() {
        let mut p = AckParser::default();
        let (a, b) = PERSISTED.split_at(37);
        assert!(p.push(a.as_bytes()).is_empty());
        let acks = ok(p.push(format!("{b}\n{{\"EventType\":\"IDLE\"").as_bytes()));
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0].fragment_timecode, Some(1_800_000_000_000));
        let idle = ok(p.push(b"}\n"));
        assert_eq!(idle[0].event, AckEvent::Idle);
        assert_eq!(idle[0].fragment_timecode, None);
    }

    #[test]
    fn errors_carry_their_code_and_a_bad_line_does_not_stall_the_rest() {
        let mut p = AckParser::default();
        let out = p.push(
            b"{\"EventType\":\"ERROR\",\"FragmentTimecode\":5,\"ErrorId\":4006,\"ErrorCode\":\"INVALID_MKV_DATA\"}\n\
              {not json}\n\
              {\"EventType\":\"PERSISTED\",\"FragmentTimecode\":6,\"FragmentNumber\":\"2\"}\n",
        );
        assert_eq!(out.len(), 3, "{out:?}");
        let err = out[0].as_ref().unwrap();
        assert_eq!((err.event, err.error_id), (AckEvent::Error, Some(4006)));
        assert!(out[1].is_err());
        assert_eq!(out[2].as_ref().unwrap().event, AckEvent::Persisted);
        let unknown = p.push(b"{\"EventType\":\"SOMETHING\"}\n");
        assert!(unknown[0].is_err());
    }

    #[test]
    fn error_codes_decide_retry_skip_or_stop() {
        for id in [4000, 4003, 5000, 5001] {
            assert_eq!(on_error(id), OnError::Reconnect, "{id}");
        }
        for id in [4001, 4002, 4004, 4006, 4007, 4009, 4010, 4011] {
            assert_eq!(on_error(id), OnError::SkipFragment, "{id}");
        }
        for id in [4008, 4500, 4507, 4599] {
            assert_eq!(on_error(id), OnError::Stop, "{id}");
        }
    }

    #[test]
    fn endless_garbage_is_bounded() {
        let mut p = AckParser::default();
        let mut out = Vec::new();
        // A string that never closes: never a complete ack.
        out.extend(p.push(b"{\"EventType\":\""));
        for _ in 0..100 {
            out.extend(p.push(&[b'a'; 1024]));
        }
        assert!(out.iter().any(|r| matches!(r, Err(AckError::TooLong))));
    }
}
