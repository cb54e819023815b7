//! Frames (and sound) of recent fragments, kept for sending and resending without
//! reading the clip file back; bounded in bytes, the oldest fragment goes first.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::upload::gop::Gop;

/// Fragment id → its GOP.
#[derive(Debug)]
pub struct FrameCache {
    gops: BTreeMap<i64, Arc<Gop>>,
    bytes: usize,
    limit: usize,
}

fn size(gop: &Gop) -> usize {
    gop.frames.iter().map(|f| f.data.len()).sum::<usize>()
        + gop.audio.iter().map(|f| f.data.len()).sum::<usize>()
}

impl FrameCache {
    pub fn new(limit: usize) -> Self {
        Self {
            gops: BTreeMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// Keeps `gop` for fragment `id`, dropping the oldest while over the limit.
    pub fn insert(&mut self, id: i64, gop: Gop) {
        self.bytes += size(&gop);
        if let Some(old) = self.gops.insert(id, Arc::new(gop)) {
            self.bytes = self.bytes.saturating_sub(size(&old));
        }
        while self.bytes > self.limit {
            let Some((_, old)) = self.gops.pop_first() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(size(&old));
        }
    }

    pub fn get(&self, id: i64) -> Option<Arc<Gop>> {
        self.gops.get(&id).cloned()
    }

    pub fn contains(&self, id: i64) -> bool {
        self.gops.contains_key(&id)
    }

    pub fn remove(&mut self, id: i64) {
        if let Some(old) = self.gops.remove(&id) {
            self.bytes = self.bytes.saturating_sub(size(&old));
        }
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::EncodedFrame;
    use bytes::Bytes;
    use chrono::Utc;
    use std::time::Duration;

    fn gop(bytes: usize) -> Gop {
        Gop {
            first_frame: 0,
            frames: vec![EncodedFrame {
                data: Bytes::from(vec![0u8; bytes]),
                pts: Duration::ZERO,
                captured_at: Utc::now(),
                keyframe: true,
                generation: 0,
            }],
            audio: Vec::new(),
            sound: None,
        }
    }

    #[test]
    fn the_oldest_fragments_go_when_over_the_limit() {
        let mut c = FrameCache::new(250);
        c.insert(1, gop(100));
        c.insert(2, gop(100));
        assert_eq!(c.bytes(), 200);
        c.insert(3, gop(100));
        assert!(!c.contains(1), "the oldest went");
        assert!(c.contains(2) && c.contains(3));
        assert_eq!(c.bytes(), 200);
        c.remove(2);
        c.remove(2);
        assert_eq!(c.bytes(), 100, "removing twice counts once");
        assert_eq!(c.get(3).map(|g| g.frames.len()), Some(1));
    }
}
