//! Fuzzes the signaling message parsers: any input must parse or fail, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = edgecam::live::message::parse_kvs(text);
        let _ = edgecam::live::message::parse_viewer(text, "fuzz");
        let _ = edgecam::live::message::viewer_payload(text);
    }
});
