//! An incremental reader of the Matroska subset a PutMedia body carries, written from the
//! Matroska/EBML specifications independently of `edgecam::upload::mkv` (pure, no I/O).
//!
//! Bytes are pushed as they arrive, split anywhere; whole elements come out as events.
//! Segment and Cluster may have an unknown size: an unknown-size Cluster ends where an
//! element that cannot be its child begins (the next Cluster, Tags, a new EBML header…)
//! or at the end of the body; an unknown-size Segment ends at a new EBML header or the end.

/// Element IDs, with their length-marker bits.
pub mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const TAGS: u32 = 0x1254_C367;
    pub const TAG: u32 = 0x7373;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    /// Children a Cluster may hold besides Timecode and blocks (all skipped).
    pub const CLUSTER_OTHER: [u32; 6] = [0x5854, 0xA7, 0xAB, 0xAF, 0xEC, 0xBF];
    /// Segment children besides Info, Tracks, Tags and Cluster (all skipped): SeekHead,
    /// Cues, Chapters, Attachments, Void, CRC-32.
    pub const SEGMENT_OTHER: [u32; 6] = [
        0x114D_9B74,
        0x1C53_BB6B,
        0x1043_A770,
        0x1941_A469,
        0xEC,
        0xBF,
    ];
}

/// Largest element buffered whole (a SimpleBlock, Tracks…): past this the body is refused.
const MAX_ELEMENT: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub number: u64,
    pub uid: u64,
    pub kind: u64,
    pub codec_id: String,
    pub codec_private: Option<Vec<u8>>,
    pub width: u64,
    pub height: u64,
    /// An audio track's SamplingFrequency in whole Hz (0 when absent; Matroska's default
    /// is 8 kHz).
    pub rate: u64,
    /// An audio track's Channels (Matroska's default is 1).
    pub channels: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub track: u64,
    pub relative_timecode: i16,
    pub keyframe: bool,
    /// The frame as stored (AVCC for H.264).
    pub data: Vec<u8>,
}

/// What the reader has seen, element by element, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MkvEvent {
    EbmlHeader {
        doc_type: String,
        doc_type_version: u64,
        doc_type_read_version: u64,
    },
    SegmentStart {
        unknown_size: bool,
    },
    /// `timecode_scale` is None when absent (Matroska's default is 1,000,000).
    Info {
        timecode_scale: Option<u64>,
    },
    Tracks(Vec<Track>),
    /// A Segment-level Tags element: every SimpleTag's (TagName, TagString).
    Tags(Vec<(String, String)>),
    /// A Cluster and its Timecode (the Timecode must be its first child).
    ClusterStart {
        timecode: u64,
    },
    Block(Block),
    /// The cluster that was open ended; `bytes` is its size on the wire, ID included.
    ClusterEnd {
        bytes: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Top,
    Segment {
        end: Option<u64>,
    },
    Cluster {
        segment_end: Option<u64>,
        end: Option<u64>,
        start: u64,
        timecode_seen: bool,
    },
}

/// Pushes bytes in, takes events out. When bytes are unreadable, the events before them
/// are still returned, `failed()` says why, and every later call returns the error.
pub struct MkvReader {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    level: Level,
    failed: Option<String>,
}

impl Default for MkvReader {
    fn default() -> Self {
        Self::new()
    }
}

/// An element's ID and size fields, once both are complete.
struct Head {
    id: u32,
    len: usize,
    size: Option<u64>,
}

impl MkvReader {
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            offset: 0,
            level: Level::Top,
            failed: None,
        }
    }

    /// Bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Why the body became unreadable, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Adds bytes; returns the events they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<MkvEvent>, String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut pos = 0;
        let buf = std::mem::take(&mut self.buf);
        let result = self.parse(&buf, &mut pos, &mut events);
        self.buf = buf;
        self.buf.drain(..pos);
        self.offset += pos as u64;
        match result {
            Ok(()) => Ok(events),
            Err(e) => {
                let e = format!("at byte {}: {e}", self.offset);
                self.failed = Some(e.clone());
                if events.is_empty() {
                    Err(e)
                } else {
                    Ok(events)
                }
            }
        }
    }

    /// The end of the body: closes an open cluster; a partial element is an error.
    pub fn finish(&mut self) -> Result<Vec<MkvEvent>, String> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !self.buf.is_empty() {
            let e = format!(
                "the body ends inside an element ({} bytes left at byte {})",
                self.buf.len(),
                self.offset
            );
            self.failed = Some(e.clone());
            return Err(e);
        }
        let mut events = Vec::new();
        if let Level::Cluster { start, .. } = self.level {
            events.push(MkvEvent::ClusterEnd {
                bytes: (self.offset - start) as usize,
            });
        }
        self.level = Level::Top;
        Ok(events)
    }

    fn parse(
        &mut self,
        buf: &[u8],
        pos: &mut usize,
        events: &mut Vec<MkvEvent>,
    ) -> Result<(), String> {
        loop {
            let at = self.offset + *pos as u64;
            // Known-size containers end by their size.
            match self.level {
                Level::Cluster {
                    end: Some(end),
                    start,
                    segment_end,
                    ..
                } if at >= end => {
                    if at > end {
                        return Err("an element overruns its Cluster".into());
                    }
                    events.push(MkvEvent::ClusterEnd {
                        bytes: (at - start) as usize,
                    });
                    self.level = Level::Segment { end: segment_end };
                    continue;
                }
                Level::Segment { end: Some(end) } if at >= end => {
                    if at > end {
                        return Err("an element overruns its Segment".into());
                    }
                    self.level = Level::Top;
                    continue;
                }
                _ => {}
            }
            let avail = &buf[*pos..];
            let Some(head) = read_head(avail)? else {
                return Ok(());
            };
            if self.ends_level(head.id, at, events)? {
                continue;
            }
            let Some(size) = head.size else {
                if !matches!(
                    (self.level, head.id),
                    (Level::Top, id::SEGMENT) | (Level::Segment { .. }, id::CLUSTER)
                ) {
                    return Err(format!("element {:X} has an unknown size", head.id));
                }
                self.open(head.id, at, head.len, None, events);
                *pos += head.len;
                continue;
            };
            if matches!(
                (self.level, head.id),
                (Level::Top, id::SEGMENT) | (Level::Segment { .. }, id::CLUSTER)
            ) {
                self.open(head.id, at, head.len, Some(size), events);
                *pos += head.len;
                continue;
            }
            if size > MAX_ELEMENT {
                return Err(format!("element {:X} of {size} bytes", head.id));
            }
            let total = head.len + size as usize;
            if avail.len() < total {
                return Ok(());
            }
            let body = &avail[head.len..total];
            if let Some(ev) = self.element(head.id, body)? {
                events.push(ev);
            }
            *pos += total;
        }
    }

    /// Closes the open Cluster (or Segment) when `id` cannot be its child.
    fn ends_level(&mut self, id: u32, at: u64, events: &mut Vec<MkvEvent>) -> Result<bool, String> {
        Ok(match self.level {
            Level::Cluster { .. } if is_cluster_child(id) => false,
            Level::Cluster {
                start, segment_end, ..
            } => {
                if !is_segment_child(id) && id != id::EBML {
                    return Err(format!("unknown element {id:X} in a Cluster"));
                }
                events.push(MkvEvent::ClusterEnd {
                    bytes: (at - start) as usize,
                });
                self.level = Level::Segment { end: segment_end };
                true
            }
            Level::Segment { .. } if id == id::EBML => {
                self.level = Level::Top;
                true
            }
            _ => false,
        })
    }

    fn open(&mut self, id: u32, at: u64, head: usize, size: Option<u64>, ev: &mut Vec<MkvEvent>) {
        let end = size.map(|s| at + head as u64 + s);
        if id == id::SEGMENT {
            self.level = Level::Segment { end };
            ev.push(MkvEvent::SegmentStart {
                unknown_size: size.is_none(),
            });
        } else if let Level::Segment { end: segment_end } = self.level {
            self.level = Level::Cluster {
                segment_end,
                end,
                start: at,
                timecode_seen: false,
            };
        }
    }

    /// One whole element at the current level.
    fn element(&mut self, el: u32, body: &[u8]) -> Result<Option<MkvEvent>, String> {
        Ok(match (&mut self.level, el) {
            (Level::Top, id::EBML) => Some(ebml_header(body)?),
            (Level::Top, other) => return Err(format!("element {other:X} outside a Segment")),
            (Level::Segment { .. }, id::INFO) => Some(MkvEvent::Info {
                timecode_scale: child(body, id::TIMECODE_SCALE)?.map(uint).transpose()?,
            }),
            (Level::Segment { .. }, id::TRACKS) => Some(MkvEvent::Tracks(tracks(body)?)),
            (Level::Segment { .. }, id::TAGS) => Some(MkvEvent::Tags(tags(body)?)),
            (Level::Segment { .. }, other) if id::SEGMENT_OTHER.contains(&other) => None,
            (Level::Segment { .. }, other) => {
                return Err(format!("unknown element {other:X} in the Segment"))
            }
            (Level::Cluster { timecode_seen, .. }, id::TIMECODE) => {
                if *timecode_seen {
                    return Err("a second Timecode in one Cluster".into());
                }
                *timecode_seen = true;
                Some(MkvEvent::ClusterStart {
                    timecode: uint(body)?,
                })
            }
            (Level::Cluster { timecode_seen, .. }, id::SIMPLE_BLOCK) => {
                if !*timecode_seen {
                    return Err("a SimpleBlock before the Cluster's Timecode".into());
                }
                Some(MkvEvent::Block(block(body)?))
            }
            (Level::Cluster { .. }, id::BLOCK_GROUP) => {
                return Err("BlockGroup is outside the subset (SimpleBlock only)".into())
            }
            (Level::Cluster { .. }, _) => None, // CLUSTER_OTHER
        })
    }
}

fn is_cluster_child(el: u32) -> bool {
    matches!(el, id::TIMECODE | id::SIMPLE_BLOCK | id::BLOCK_GROUP)
        || id::CLUSTER_OTHER.contains(&el)
}

fn is_segment_child(el: u32) -> bool {
    matches!(el, id::INFO | id::TRACKS | id::TAGS | id::CLUSTER) || id::SEGMENT_OTHER.contains(&el)
}

/// An element ID (1–4 bytes, marker bits kept): None until complete.
fn read_id(b: &[u8]) -> Result<Option<(u32, usize)>, String> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Err(format!("invalid element ID byte {first:#04x}"));
    }
    if b.len() < len {
        return Ok(None);
    }
    Ok(Some((
        b[..len].iter().fold(0u32, |v, x| v << 8 | u32::from(*x)),
        len,
    )))
}

/// A variable-size integer (1–8 bytes, marker removed); `Some(None)` is "unknown".
fn read_vint(b: &[u8]) -> Result<Option<(Option<u64>, usize)>, String> {
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    if first == 0 {
        return Err("invalid size: more than 8 bytes".into());
    }
    let len = first.leading_zeros() as usize + 1;
    if b.len() < len {
        return Ok(None);
    }
    let raw = b[..len].iter().fold(0u64, |v, x| v << 8 | u64::from(*x));
    let value = raw & (u64::MAX >> (64 - 7 * len));
    let all_ones = value == u64::MAX >> (64 - 7 * len);
    Ok(Some(((!all_ones).then_some(value), len)))
}

fn read_head(b: &[u8]) -> Result<Option<Head>, String> {
    let Some((id, id_len)) = read_id(b)? else {
        return Ok(None);
    };
    let Some((size, size_len)) = read_vint(&b[id_len..])? else {
        return Ok(None);
    };
    Ok(Some(Head {
        id,
        len: id_len + size_len,
        size,
    }))
}

/// The children of a sized master element's body.
pub fn children(mut b: &[u8]) -> Result<Vec<(u32, &[u8])>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let head = read_head(b)?.ok_or("a child element is cut short")?;
        let size = head.size.ok_or("a child element has an unknown size")?;
        let end = head
            .len
            .checked_add(usize::try_from(size).map_err(|_| "size too large")?)
            .filter(|e| *e <= b.len())
            .ok_or_else(|| format!("child {:X} overruns its parent", head.id))?;
        out.push((head.id, &b[head.len..end]));
        b = &b[end..];
    }
    Ok(out)
}

fn child(b: &[u8], el: u32) -> Result<Option<&[u8]>, String> {
    Ok(children(b)?
        .into_iter()
        .find(|(i, _)| *i == el)
        .map(|(_, v)| v))
}

pub fn uint(b: &[u8]) -> Result<u64, String> {
    if b.len() > 8 {
        return Err(format!("an unsigned integer of {} bytes", b.len()));
    }
    Ok(b.iter().fold(0u64, |v, x| v << 8 | u64::from(*x)))
}

/// A float element: 4 or 8 bytes, big-endian IEEE 754 (0 bytes: 0.0).
pub fn float(b: &[u8]) -> Result<f64, String> {
    match b.len() {
        0 => Ok(0.0),
        4 => Ok(f64::from(f32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Ok(f64::from_be_bytes(a))
        }
        n => Err(format!("a float of {n} bytes")),
    }
}

/// A string element (trailing NULs are padding).
pub fn string(b: &[u8]) -> Result<String, String> {
    let end = b.iter().rposition(|c| *c != 0).map_or(0, |p| p + 1);
    String::from_utf8(b[..end].to_vec()).map_err(|_| "a string is not UTF-8".into())
}

fn ebml_header(body: &[u8]) -> Result<MkvEvent, String> {
    let mut doc_type = String::new();
    let (mut version, mut read_version) = (1, 1);
    for (el, v) in children(body)? {
        match el {
            id::DOC_TYPE => doc_type = string(v)?,
            id::DOC_TYPE_VERSION => version = uint(v)?,
            id::DOC_TYPE_READ_VERSION => read_version = uint(v)?,
            _ => {}
        }
    }
    Ok(MkvEvent::EbmlHeader {
        doc_type,
        doc_type_version: version,
        doc_type_read_version: read_version,
    })
}

fn tracks(body: &[u8]) -> Result<Vec<Track>, String> {
    let mut out = Vec::new();
    for (el, entry) in children(body)? {
        if el != id::TRACK_ENTRY {
            continue;
        }
        let mut t = Track {
            number: 0,
            uid: 0,
            kind: 0,
            codec_id: String::new(),
            codec_private: None,
            width: 0,
            height: 0,
            rate: 0,
            channels: 1,
        };
        for (el, v) in children(entry)? {
            match el {
                id::TRACK_NUMBER => t.number = uint(v)?,
                id::TRACK_UID => t.uid = uint(v)?,
                id::TRACK_TYPE => t.kind = uint(v)?,
                id::CODEC_ID => t.codec_id = string(v)?,
                id::CODEC_PRIVATE => t.codec_private = Some(v.to_vec()),
                id::VIDEO => {
                    for (el, v) in children(v)? {
                        match el {
                            id::PIXEL_WIDTH => t.width = uint(v)?,
                            id::PIXEL_HEIGHT => t.height = uint(v)?,
                            _ => {}
                        }
                    }
                }
                id::AUDIO => {
                    for (el, v) in children(v)? {
                        match el {
                            id::SAMPLING_FREQUENCY => t.rate = float(v)?.round() as u64,
                            id::CHANNELS => t.channels = uint(v)?,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out.push(t);
    }
    Ok(out)
}

fn tags(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (el, tag) in children(body)? {
        if el != id::TAG {
            continue;
        }
        for (el, simple) in children(tag)? {
            if el != id::SIMPLE_TAG {
                continue;
            }
            let name = child(simple, id::TAG_NAME)?.ok_or("a SimpleTag without TagName")?;
            let value = child(simple, id::TAG_STRING)?.unwrap_or_default();
            out.push((string(name)?, string(value)?));
        }
    }
    Ok(out)
}

fn block(body: &[u8]) -> Result<Block, String> {
    let (track, len) = read_vint(body)?
        .and_then(|(n, len)| Some((n?, len)))
        .ok_or("a SimpleBlock without a track number")?;
    let rest = &body[len..];
    if rest.len() < 3 {
        return Err("a SimpleBlock shorter than its header".into());
    }
    let flags = rest[2];
    if flags & 0x06 != 0 {
        return Err("a laced SimpleBlock (lacing is outside the subset)".into());
    }
    Ok(Block {
        track,
        relative_timecode: i16::from_be_bytes([rest[0], rest[1]]),
        keyframe: flags & 0x80 != 0,
        data: rest[3..].to_vec(),
    })
}

/// A whole body, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub header: Header,
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub doc_type: String,
    pub doc_type_version: u64,
    pub doc_type_read_version: u64,
    /// Nanoseconds per timecode unit (Matroska's default when Info has none).
    pub timecode_scale: u64,
    pub tracks: Vec<Track>,
}

impl Header {
    /// The first track (the picture).
    pub fn track(&self) -> &Track {
        &self.tracks[0]
    }

    /// Track 2 (the sound), when there is one.
    pub fn audio(&self) -> Option<&Track> {
        self.tracks.get(1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Absolute, in timecode-scale units.
    pub timecode: u64,
    /// From the Tags element just before this cluster.
    pub tags: Vec<(String, String)>,
    pub blocks: Vec<Block>,
    /// Size on the wire.
    pub bytes: usize,
}

/// Reads a complete body with one header: header info, then each cluster with its tags.
pub fn read_all(bytes: &[u8]) -> Result<Parsed, String> {
    let mut reader = MkvReader::new();
    let mut events = reader.push(bytes)?;
    if let Some(e) = reader.failed() {
        return Err(e.to_owned());
    }
    events.extend(reader.finish()?);
    let mut header: Option<Header> = None;
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut open = false;
    for ev in events {
        match ev {
            MkvEvent::EbmlHeader {
                doc_type,
                doc_type_version,
                doc_type_read_version,
            } => {
                if header.is_some() {
                    return Err("a second EBML header".into());
                }
                header = Some(Header {
                    doc_type,
                    doc_type_version,
                    doc_type_read_version,
                    timecode_scale: 1_000_000,
                    tracks: Vec::new(),
                });
            }
            MkvEvent::SegmentStart { .. } => {}
            MkvEvent::Info { timecode_scale } => {
                let h = header.as_mut().ok_or("Info before the EBML header")?;
                h.timecode_scale = timecode_scale.unwrap_or(1_000_000);
            }
            MkvEvent::Tracks(t) => header.as_mut().ok_or("Tracks before the header")?.tracks = t,
            // A Tags element belongs to the cluster before it.
            MkvEvent::Tags(t) => clusters
                .last_mut()
                .ok_or("Tags before any cluster")?
                .tags
                .extend(t),
            MkvEvent::ClusterStart { timecode } => {
                open = true;
                clusters.push(Cluster {
                    timecode,
                    tags: Vec::new(),
                    blocks: Vec::new(),
                    bytes: 0,
                });
            }
            MkvEvent::Block(b) => clusters
                .last_mut()
                .ok_or("a block outside a cluster")?
                .blocks
                .push(b),
            MkvEvent::ClusterEnd { bytes } => {
                if !open {
                    return Err("a Cluster without a Timecode".into());
                }
                open = false;
                if let Some(c) = clusters.last_mut() {
                    c.bytes = bytes;
                }
            }
        }
    }
    let header = header.ok_or("no EBML header")?;
    if header.tracks.is_empty() {
        return Err("no Tracks".into());
    }
    Ok(Parsed { header, clusters })
}

/// H.264 access units (Annex-B) to write and read back: a real 320×240 constrained
/// baseline SPS/PPS (x264 on videotestsrc) around slices of any payload.
pub mod avc {
    pub const SPS: [u8; 28] = [
        0x67, 0x42, 0xC0, 0x15, 0xD9, 0x01, 0x41, 0xFB, 0x01, 0x6A, 0x0C, 0x0C, 0x0D, 0x4A, 0x00,
        0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00, 0x79, 0x1E, 0x2C, 0x5C, 0x90,
    ];
    pub const PPS: [u8; 4] = [0x68, 0xCB, 0x8C, 0xB2];

    /// A slice NAL unit (IDR or not) around `payload`, with emulation prevention, so that
    /// it survives Annex-B framing byte for byte.
    pub fn slice(idr: bool, payload: &[u8]) -> Vec<u8> {
        let mut nal = vec![if idr { 0x65 } else { 0x41 }];
        let mut zeros = 0;
        for &b in payload {
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            nal.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        if nal.last() == Some(&0) {
            nal.push(0x80); // rbsp_stop_one_bit: a NAL unit never ends in a zero byte
        }
        nal
    }

    /// An access unit: AUD, then SPS and PPS when `idr`, then the slice; 4-byte start codes.
    pub fn access_unit(idr: bool, slice: &[u8]) -> Vec<u8> {
        let mut au = vec![0, 0, 0, 1, 0x09, 0xF0];
        let nals: Vec<&[u8]> = if idr {
            vec![&SPS, &PPS, slice]
        } else {
            vec![slice]
        };
        for nal in nals {
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(nal);
        }
        au
    }

    /// What the access unit becomes in a block: AVCC (4-byte lengths), no AUD.
    pub fn avcc_frame(idr: bool, slice: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let nals: Vec<&[u8]> = if idr {
            vec![&SPS, &PPS, slice]
        } else {
            vec![slice]
        };
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }
}
