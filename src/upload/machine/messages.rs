//! What goes into the uploader's machine (what happened) and what comes out of it (what
//! to do), and the settings it starts with.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::{ClockState, Correction};
use crate::index::FragmentRow;
use crate::media::{AudioFrame, EncodedFrame};
use crate::recorder::Feed;
use crate::upload::ack::Ack;
use crate::upload::gop::Gop;

/// What the machine is told by the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// Still images are asked for in every fragment.
    pub images: bool,
    /// KVS notifies a topic of each clip's first fragment.
    pub notify: bool,
    /// Continuous mode with sound: the live stream's GOPs wait for it.
    pub live_sound: bool,
}

/// What happened.
#[derive(Debug)]
pub enum Input {
    /// A message of the recorder's clip feed.
    Feed(Feed),
    /// A frame of the live stream, and how many its subscription has lost so far.
    Live {
        frame: EncodedFrame,
        lost: u64,
    },
    LiveAudio(AudioFrame),
    /// The wall clock's state (first at start, then on every change).
    Clock(ClockState),
    /// Fragments the index holds whose frames can be read: to send, in this order.
    /// `live`: cut from the live feed just now (its latency is measured).
    Queue {
        rows: Vec<FragmentRow>,
        live: bool,
    },
    /// The connection asked for is open (its header written).
    Connected,
    /// Opening it failed; `retryable`: a later attempt may work.
    ConnectFailed {
        retryable: bool,
    },
    /// A fragment's frames cannot be read (gone, or not a stream KVS takes).
    Unreadable {
        id: u64,
        why: String,
    },
    Ack(Ack),
    /// The connection dropped, or a write failed.
    Lost,
    /// Continuous mode's buffer dropped these fragments to make room.
    Forget(Vec<i64>),
}

/// Something worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Nothing goes up before the clock is set (said once).
    WaitingForClock,
    ClockSet,
    /// A planned new connection, before the service's connection time limit.
    Rotation,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Record a GOP cut live as a fragment (its times corrected), keep its frames, and
    /// queue it (`Input::Queue`, live).
    Record {
        clip_id: Option<Arc<str>>,
        gop: Gop,
        start_at: DateTime<Utc>,
        end_at: DateTime<Utc>,
    },
    /// Open a connection whose header comes from fragment `id`, starting at `first`.
    Connect {
        id: u64,
        first: FragmentRow,
    },
    /// Write fragment `id` (its frames from memory or its clip file) with these tags.
    Write {
        id: u64,
        rows: Vec<FragmentRow>,
        tags: Vec<(&'static str, String)>,
    },
    /// Close the connection.
    Close,
    /// KVS keeps these rows: record it (with KVS's fragment number), forget their frames.
    Persisted {
        rows: Vec<FragmentRow>,
        fragment_number: Option<String>,
        live: bool,
    },
    /// These rows will never go up: record why.
    Skipped {
        rows: Vec<FragmentRow>,
        code: u32,
        why: String,
    },
    /// KVS will not take data on the stream (code); tried again in 10 minutes.
    Stopped {
        code: u32,
    },
    /// Start again from the index: clips' owed frames (not of the clips still being
    /// cut), then every pending fragment, as `Input::Queue`.
    Reload {
        cutting: Vec<Arc<str>>,
    },
    /// Finished clips (not those still being cut): queue the frames no fragment covers
    /// yet, and settle the clips with nothing left.
    CatchUp {
        cutting: Vec<Arc<str>>,
    },
    /// Move the times recorded before the clock was set.
    CorrectTimes(Vec<Correction>),
    Notice(Notice),
    /// Count the backlog (a metric).
    CountBacklog,
}
