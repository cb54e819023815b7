//! The clip feed: every frame the recorder writes to a clip, with its sample number in
//! the file, for a path that follows clips as they are written (the uploader in events
//! mode). Sending never waits: a follower that falls behind misses frames and reads them
//! back from the clip file.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::media::{AudioFormat, AudioFrame, EncodedFrame};

/// Frames a follower may lag behind the recorder: 20 s at 30 fps.
pub const FEED_QUEUE: usize = 600;

/// What the recorder tells a follower of its clips.
#[derive(Debug)]
pub enum Feed {
    /// A clip begins; its sound track has `sound` (`None`: picture only).
    ClipStart {
        clip_id: Arc<str>,
        sound: Option<AudioFormat>,
    },
    /// An AAC frame written to the clip's sound track.
    Audio {
        clip_id: Arc<str>,
        frame: AudioFrame,
    },
    /// The clip's sound track ended before the clip (the microphone stopped).
    AudioEnd { clip_id: Arc<str> },
    /// Frame number `index` of clip `clip_id` (its sample number in the file).
    Frame {
        clip_id: Arc<str>,
        index: u64,
        frame: EncodedFrame,
    },
    /// The clip has no more frames; it has `frames` in all.
    ClipEnd { clip_id: Arc<str>, frames: u64 },
}

/// The recorder's side of the feed; sending never waits.
#[derive(Debug, Clone)]
pub struct ClipFeed {
    tx: mpsc::Sender<Feed>,
}

/// The follower's side of the feed.
#[derive(Debug)]
pub struct FeedReceiver(mpsc::Receiver<Feed>);

impl FeedReceiver {
    pub async fn recv(&mut self) -> Option<Feed> {
        self.0.recv().await
    }
}

impl ClipFeed {
    pub fn channel() -> (Self, FeedReceiver) {
        let (tx, rx) = mpsc::channel(FEED_QUEUE);
        (Self { tx }, FeedReceiver(rx))
    }

    /// `false` when the follower is behind (the frame is not taken; the file has it).
    pub fn frame(&self, clip_id: &Arc<str>, index: u64, frame: &EncodedFrame) -> bool {
        self.tx
            .try_send(Feed::Frame {
                clip_id: Arc::clone(clip_id),
                index,
                frame: frame.clone(),
            })
            .is_ok()
    }

    /// Sent before the clip's first frame. A follower that misses it (behind) sees a
    /// gap and reads the clip from its file.
    pub fn clip_start(&self, clip_id: &Arc<str>, sound: Option<&AudioFormat>) {
        let _ = self.tx.try_send(Feed::ClipStart {
            clip_id: Arc::clone(clip_id),
            sound: sound.cloned(),
        });
    }

    /// `false` when the follower is behind (it then ends the clip's live sound).
    pub fn audio(&self, clip_id: &Arc<str>, frame: &AudioFrame) -> bool {
        self.tx
            .try_send(Feed::Audio {
                clip_id: Arc::clone(clip_id),
                frame: frame.clone(),
            })
            .is_ok()
    }

    pub fn audio_end(&self, clip_id: &Arc<str>) {
        let _ = self.tx.try_send(Feed::AudioEnd {
            clip_id: Arc::clone(clip_id),
        });
    }

    pub fn clip_end(&self, clip_id: &Arc<str>, frames: u64) {
        let _ = self.tx.try_send(Feed::ClipEnd {
            clip_id: Arc::clone(clip_id),
            frames,
        });
    }
}
