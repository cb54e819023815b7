//! H.264 helpers: Annex-B NAL unit splitting, NAL types, and the few SPS fields edgecam
//! needs (profile, level, picture size).

/// NAL unit types edgecam cares about (ITU-T H.264 table 7-1).
pub mod nal_type {
    pub const NON_IDR: u8 = 1;
    pub const IDR: u8 = 5;
    pub const SEI: u8 = 6;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
    pub const AUD: u8 = 9;
}

/// The type of a NAL unit (its header byte without start code).
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Iterates the NAL units of an Annex-B buffer, without their start codes.
pub fn nal_units(data: &[u8]) -> NalUnits<'_> {
    NalUnits { rest: data }
}

pub struct NalUnits<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = find_start_code(self.rest, 0)?;
        let body = &self.rest[start.end..];
        let end = find_start_code(body, 0).map_or(body.len(), |s| s.start);
        // A zero byte before the next 3-byte start code belongs to a 4-byte start code.
        let nal = trim_trailing_zeros(&body[..end]);
        self.rest = &body[end..];
        if nal.is_empty() {
            return self.next();
        }
        Some(nal)
    }
}

fn trim_trailing_zeros(mut nal: &[u8]) -> &[u8] {
    while let [head @ .., 0] = nal {
        nal = head;
    }
    nal
}

/// Finds the next `00 00 01` at or after `from`; the range covers the start code.
fn find_start_code(data: &[u8], from: usize) -> Option<std::ops::Range<usize>> {
    let mut i = from;
    while i + 3 <= data.len() {
        if data[i + 2] > 1 {
            i += 3;
        } else if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            return Some(i..i + 3);
        } else {
            i += 1;
        }
    }
    None
}

/// What an access unit contains, enough to check the pipeline contract (README.md, "Pipelines").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuSummary {
    pub has_idr: bool,
    pub has_sps: bool,
    pub has_pps: bool,
    pub slices: usize,
}

pub fn summarize(au: &[u8]) -> AuSummary {
    let mut s = AuSummary::default();
    for nal in nal_units(au) {
        match nal_unit_type(nal) {
            Some(nal_type::IDR) => {
                s.has_idr = true;
                s.slices += 1;
            }
            Some(nal_type::NON_IDR) => s.slices += 1,
            Some(nal_type::SPS) => s.has_sps = true,
            Some(nal_type::PPS) => s.has_pps = true,
            _ => {}
        }
    }
    s
}

/// The first SPS and PPS of an access unit, without start codes.
pub fn parameter_sets(au: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut sps = None;
    let mut pps = None;
    for nal in nal_units(au) {
        match nal_unit_type(nal) {
            Some(nal_type::SPS) if sps.is_none() => sps = Some(nal),
            Some(nal_type::PPS) if pps.is_none() => pps = Some(nal),
            _ => {}
        }
    }
    Some((sps?, pps?))
}

/// Fields of a sequence parameter set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    /// The constraint_set flags byte (constraint_set0 is the top bit).
    pub constraints: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
    /// 1 = 4:2:0 (the default when the profile does not say).
    pub chroma_format_idc: u32,
    pub bit_depth_luma_minus8: u32,
    pub bit_depth_chroma_minus8: u32,
}

impl Sps {
    /// Constrained baseline: profile 66 with constraint_set1.
    pub fn is_constrained_baseline(&self) -> bool {
        self.profile_idc == 66 && self.constraints & 0x40 != 0
    }

    /// `profile-level-id` as SDP writes it, e.g. `42e01f`.
    pub fn profile_level_id(&self) -> String {
        format!(
            "{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraints, self.level_idc
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpsError {
    #[error("not an SPS NAL unit")]
    NotSps,
    #[error("SPS ends early")]
    Truncated,
    #[error("SPS value out of range: {0}")]
    OutOfRange(&'static str),
}

/// Parses the fields of an SPS NAL unit (header byte included, no start code).
pub fn parse_sps(nal: &[u8]) -> Result<Sps, SpsError> {
    if nal_unit_type(nal) != Some(nal_type::SPS) {
        return Err(SpsError::NotSps);
    }
    let rbsp = unescape(&nal[1..]);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)? as u8;
    let constraints = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let (mut bit_depth_luma_minus8, mut bit_depth_chroma_minus8) = (0, 0);
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        bit_depth_luma_minus8 = r.ue()?;
        bit_depth_chroma_minus8 = r.ue()?;
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bits(1)? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return Err(SpsError::OutOfRange(
                    "num_ref_frames_in_pic_order_cnt_cycle",
                ));
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut crop_x, mut crop_y) = (0, 0);
    if r.bits(1)? == 1 {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (unit_x, unit_y) = match chroma_format_idc {
            0 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            2 => (2, 2 - frame_mbs_only),
            _ => (1, 2 - frame_mbs_only),
        };
        crop_x = (l + rt) * unit_x;
        crop_y = (t + b) * unit_y;
    }
    let width = (width_mbs * 16)
        .checked_sub(crop_x)
        .ok_or(SpsError::OutOfRange("crop"))?;
    let height = ((2 - frame_mbs_only) * height_map_units * 16)
        .checked_sub(crop_y)
        .ok_or(SpsError::OutOfRange("crop"))?;
    Ok(Sps {
        profile_idc,
        constraints,
        level_idc,
        width,
        height,
        chroma_format_idc,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
    })
}

fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), SpsError> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
pub fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bits(&mut self, n: u32) -> Result<u32, SpsError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8).ok_or(SpsError::Truncated)?;
            let bit = (byte >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }

    fn ue(&mut self) -> Result<u32, SpsError> {
        let mut zeros = 0;
        while self.bits(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(SpsError::OutOfRange("exp-golomb code"));
            }
        }
        let rest = self.bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    fn se(&mut self) -> Result<i64, SpsError> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS of a 640×360 constrained-baseline stream from x264enc (level 3.0), with an
    /// emulation-prevention byte (`00 00 03`) inside.
    const SPS_640X360: &[u8] = &[
        0x67, // forbidden 0, nal_ref_idc 3, type 7 (SPS)
        0x42, 0xc0, 0x1e, // profile 66, constraint_set0+1, level 30
        0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x16, 0xa0, 0xc0, 0xc0, 0xd4, 0xa0, 0x00, 0x00, 0x03,
        0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe2, 0xc5, 0xc9,
    ];

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 1, 0x67, 0x42, // SPS (truncated, fine for splitting)
            0, 0, 0, 1, 0x68, 0xce, // PPS
            0, 0, 1, 0x65, 0x88, 0x80, // IDR slice
        ];
        let nals: Vec<&[u8]> = nal_units(&au).collect();
        assert_eq!(
            nals,
            [
                &[0x09, 0xf0][..],
                &[0x67, 0x42],
                &[0x68, 0xce],
                &[0x65, 0x88, 0x80]
            ]
        );
        let s = summarize(&au);
        assert!(s.has_idr && s.has_sps && s.has_pps);
        assert_eq!(s.slices, 1);
        assert_eq!(
            parameter_sets(&au),
            Some((&[0x67, 0x42][..], &[0x68, 0xce][..]))
        );
    }

    #[test]
    fn no_start_code_means_no_units() {
        assert_eq!(nal_units(&[1, 2, 3, 4]).count(), 0);
        assert_eq!(nal_units(&[]).count(), 0);
    }

    #[test]
    fn parses_a_real_sps() {
        let sps = parse_sps(SPS_640X360).unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        assert!(sps.is_constrained_baseline());
        assert_eq!(sps.profile_level_id(), "42c01e");
    }

    #[test]
    fn truncated_sps_is_an_error_not_a_panic() {
        // The fields edgecam reads end before the VUI, so only short prefixes fail.
        for n in 0..SPS_640X360.len() {
            let parsed = parse_sps(&SPS_640X360[..n]);
            assert_eq!(parsed.is_ok(), n >= 10, "prefix {n}: {parsed:?}");
        }
        assert_eq!(parse_sps(&[0x68, 0]), Err(SpsError::NotSps));
    }

    #[test]
    fn unescape_drops_emulation_prevention() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
    }
}
