//! PutMedia ack parsing never panics and never holds more than its bound, however the
//! response body is chunked: the input is split at its first byte's value.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parser = edgecam::upload::ack::AckParser::default();
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (a, b) = data.split_at(cut);
    let _ = parser.push(a);
    let _ = parser.push(b);
});
