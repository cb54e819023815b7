//! Fitting a JPEG snapshot under MQTT's payload limit: halve its size with GStreamer
//! until it fits.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// Width and height of a baseline or progressive JPEG, from its SOF marker (pure).
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2; // after SOI
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = u16::from_be_bytes([*jpeg.get(i + 5)?, *jpeg.get(i + 6)?]);
            let w = u16::from_be_bytes([*jpeg.get(i + 7)?, *jpeg.get(i + 8)?]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

fn rescale(jpeg: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let text = format!(
        "appsrc name=src caps=image/jpeg ! jpegdec ! videoconvert ! videoscale ! \
         video/x-raw,width={width},height={height} ! jpegenc quality=80 ! appsink name=sink sync=false"
    );
    let pipeline = gst::parse::launch(&text)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let get = |name: &str| pipeline.by_name(name).ok_or(format!("no {name}"));
    let src = get("src")?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| "src is not an appsrc")?;
    let sink = get("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "sink is not an appsink")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let pushed = src
        .push_buffer(gst::Buffer::from_slice(jpeg.to_vec()))
        .and_then(|_| src.end_of_stream());
    let out = pushed.map_err(|e| e.to_string()).and_then(|_| {
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(5))
            .ok_or("the scaler produced nothing")?;
        let buffer = sample.buffer().ok_or("empty sample")?;
        let map = buffer.map_readable().map_err(|e| e.to_string())?;
        Ok(map.as_slice().to_vec())
    });
    let _ = pipeline.set_state(gst::State::Null);
    out
}

/// The JPEG, halved in size as often as needed to be at most `max` bytes.
pub fn shrink(jpeg: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let (mut w, mut h) = jpeg_size(jpeg).ok_or("not a JPEG")?;
    let mut out = jpeg.to_vec();
    while out.len() > max {
        if w < 64 || h < 64 {
            return Err(format!("still {} bytes at {w}×{h}", out.len()));
        }
        // Even sizes keep every scaler and encoder happy.
        w = (w / 2) & !1;
        h = (h / 2) & !1;
        out = rescale(jpeg, w, h)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_size_from_the_frame_header() {
        // SOI, APP0 (length 4, 2 bytes of data), SOF0: length 11, precision 8,
        // height 0x02D0 = 720, width 0x0500 = 1280, 1 component.
        let jpeg = [
            0xFF, 0xD8, // SOI
            0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46, // APP0
            0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x02, 0xD0, 0x05, 0x00, 0x01, 0x01, 0x11, 0x00,
        ];
        assert_eq!(jpeg_size(&jpeg), Some((1280, 720)));
        assert_eq!(jpeg_size(b"not a jpeg"), None);
        assert_eq!(jpeg_size(&jpeg[..10]), None, "truncated");
    }

    #[test]
    fn a_large_snapshot_is_scaled_under_the_limit() {
        gst::init().unwrap();
        // A noisy 1920×1080 picture compresses badly: well over 128 KB at quality 95.
        let text =
            "videotestsrc pattern=snow num-buffers=1 ! video/x-raw,width=1920,height=1080 ! \
                    jpegenc quality=95 ! appsink name=sink";
        let p = gst::parse::launch(text)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = p
            .by_name("sink")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let sample = sink.pull_sample().unwrap();
        let big = sample.buffer().unwrap().map_readable().unwrap().to_vec();
        p.set_state(gst::State::Null).unwrap();
        assert!(big.len() > 128 * 1024, "{} bytes", big.len());
        let small = shrink(&big, 128 * 1024).unwrap();
        assert!(small.len() <= 128 * 1024);
        let (w, h) = jpeg_size(&small).unwrap();
        assert!(w < 1920 && h < 1080 && w > 0, "{w}×{h}");
    }
}
