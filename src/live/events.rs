//! What a viewer session tells the master: its candidates, its connection state, its
//! first frame, and the ways a viewer says goodbye.

use std::time::Duration;

use tokio::sync::mpsc;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;

use super::message::Candidate;

/// What a session reports to the master.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    LocalCandidate(Candidate),
    State(RTCPeerConnectionState),
    /// The first keyframe went out, this long after the offer arrived.
    FirstFrame(Duration),
    /// The viewer said it is leaving, in one of the ways the protocols allow (webrtc-rs
    /// itself reports a remote close only as a later ICE disconnect).
    Goodbye(Goodbye),
}

/// How a viewer said goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goodbye {
    /// It closed its `control` data channel.
    ControlClosed,
    /// Its last data channel closed: a peer connection closed with SCTP ABORT or
    /// SHUTDOWN, or DTLS close_notify under it, ends every channel at once.
    ChannelsClosed,
    /// It sent an RTCP BYE (RFC 3550 §6.6).
    RtcpBye,
}

impl Goodbye {
    pub fn as_str(self) -> &'static str {
        match self {
            Goodbye::ControlClosed => "closed its control channel",
            Goodbye::ChannelsClosed => "closed its data channels",
            Goodbye::RtcpBye => "sent RTCP BYE",
        }
    }
}

/// Events tagged with the session's serial, so a replaced session's are ignored.
pub type EventSender = mpsc::Sender<(u64, SessionEvent)>;
