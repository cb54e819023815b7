//! JPEG stills: fitting a snapshot under MQTT's payload limit (halve its size with
//! GStreamer until it fits), and drawing the detector's boxes on one.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::events::Rect;

/// The colour of a drawn box: a green that stands out on most scenes.
const BOX_RGB: [u8; 3] = [0x20, 0xE0, 0x40];

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
    one_picture(&text, jpeg, &[])
}

/// The JPEG with `boxes` (picture fractions) drawn on it, as a JPEG of the same size.
pub fn annotate(jpeg: &[u8], boxes: &[Rect]) -> Result<Vec<u8>, String> {
    let text = "appsrc name=src caps=image/jpeg ! jpegdec ! videoconvert ! \
                video/x-raw,format=RGB ! identity name=draw ! jpegenc quality=85 ! \
                appsink name=sink sync=false";
    one_picture(text, jpeg, boxes)
}

/// Draws each box's outline on an RGB picture (`stride` bytes a row), `thickness`
/// pixels wide, inside the box and clipped to the picture.
pub fn draw_boxes(
    rgb: &mut [u8],
    (width, height, stride): (usize, usize, usize),
    boxes: &[Rect],
    thickness: usize,
) {
    let px = |f: f32, n: usize| ((f.clamp(0.0, 1.0) * n as f32).round() as usize).min(n);
    let mut fill = |x0: usize, x1: usize, y0: usize, y1: usize| {
        for y in y0..y1 {
            for x in x0..x1 {
                if let Some(p) = rgb.get_mut(y * stride + x * 3..y * stride + x * 3 + 3) {
                    p.copy_from_slice(&BOX_RGB);
                }
            }
        }
    };
    for b in boxes {
        let (x0, x1) = (px(b.x0, width), px(b.x1, width));
        let (y0, y1) = (px(b.y0, height), px(b.y1, height));
        if x0 >= x1 || y0 >= y1 {
            continue;
        }
        let t = thickness.max(1);
        fill(x0, x1, y0, (y0 + t).min(y1));
        fill(x0, x1, y1.saturating_sub(t).max(y0), y1);
        fill(x0, (x0 + t).min(x1), y0, y1);
        fill(x1.saturating_sub(t).max(x0), x1, y0, y1);
    }
}

/// Draws `boxes` on every RGB picture leaving `element`.
fn draw_on(element: &gst::Element, boxes: Vec<Rect>) -> Result<(), String> {
    let pad = element.static_pad("src").ok_or("no src pad to draw on")?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, probe| {
        let info = pad
            .current_caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok());
        let (Some(info), Some(gst::PadProbeData::Buffer(buffer))) = (info, probe.data.as_mut())
        else {
            return gst::PadProbeReturn::Ok;
        };
        let (w, h) = (info.width() as usize, info.height() as usize);
        // Boxes two pixels wide on a 640-wide picture, thicker on larger ones.
        let thickness = (w / 320).max(2);
        let buffer = buffer.make_mut();
        if let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info) {
            let stride = frame.plane_stride()[0].max(0) as usize;
            if let Ok(data) = frame.plane_data_mut(0) {
                draw_boxes(data, (w, h, stride), &boxes, thickness);
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Runs one picture through `text` (`appsrc name=src ! … ! appsink name=sink`, with
/// an element named `draw` when there are `boxes` to draw) and returns what comes out.
fn one_picture(text: &str, jpeg: &[u8], boxes: &[Rect]) -> Result<Vec<u8>, String> {
    let pipeline = gst::parse::launch(text)
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
    if !boxes.is_empty() {
        draw_on(&get("draw")?, boxes.to_vec())?;
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let pushed = src
        .push_buffer(gst::Buffer::from_slice(jpeg.to_vec()))
        .and_then(|_| src.end_of_stream());
    let out = pushed.map_err(|e| e.to_string()).and_then(|_| {
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(5))
            .ok_or("the picture could not be read (not a JPEG?)")?;
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

    /// The one picture a `… ! appsink name=sink` pipeline gives.
    fn still(text: &str) -> Vec<u8> {
        gst::init().unwrap();
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
        let bytes = sample.buffer().unwrap().map_readable().unwrap().to_vec();
        p.set_state(gst::State::Null).unwrap();
        bytes
    }

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
        // A noisy 1920×1080 picture compresses badly: well over 128 KB at quality 95.
        let big = still(
            "videotestsrc pattern=snow num-buffers=1 ! video/x-raw,width=1920,height=1080 ! \
             jpegenc quality=95 ! appsink name=sink",
        );
        assert!(big.len() > 128 * 1024, "{} bytes", big.len());
        let small = shrink(&big, 128 * 1024).unwrap();
        assert!(small.len() <= 128 * 1024);
        let (w, h) = jpeg_size(&small).unwrap();
        assert!(w < 1920 && h < 1080 && w > 0, "{w}×{h}");
    }

    #[test]
    fn boxes_are_outlines_inside_the_box_clipped_to_the_picture() {
        // A 10×4 RGB picture, rows padded to 32 bytes.
        let mut rgb = vec![0u8; 32 * 4];
        let inside = Rect::new(0.2, 0.25, 0.6, 1.0);
        let beyond = Rect::new(0.9, -0.5, 1.5, 0.5);
        draw_boxes(&mut rgb, (10, 4, 32), &[inside, beyond], 1);
        let at = |x: usize, y: usize| rgb[y * 32 + x * 3..y * 32 + x * 3 + 3] == BOX_RGB;
        // Columns 2..6, rows 1..4: the edges are drawn, the middle is not.
        assert!(at(2, 1) && at(5, 1) && at(2, 3) && at(5, 3) && at(2, 2) && at(5, 2));
        assert!(!at(3, 2) && !at(4, 2), "inside stays");
        assert!(!at(1, 1) && !at(6, 2) && !at(3, 0), "outside stays");
        // Clipped: column 9, rows 0..2.
        assert!(at(9, 0) && at(9, 1) && !at(9, 2));
        // Padding bytes are never touched.
        assert!(rgb[30..32].iter().all(|b| *b == 0));
        // An empty box draws nothing.
        let mut none = vec![0u8; 30];
        draw_boxes(&mut none, (10, 1, 30), &[Rect::new(0.5, 0.0, 0.5, 1.0)], 2);
        assert!(none.iter().all(|b| *b == 0));
    }

    #[test]
    fn an_annotated_snapshot_is_a_jpeg_of_the_same_size_with_the_box_on_it() {
        let black = still(
            "videotestsrc pattern=black num-buffers=1 ! video/x-raw,width=640,height=360 ! \
             jpegenc ! appsink name=sink",
        );
        let marked = annotate(&black, &[Rect::new(0.25, 0.25, 0.75, 0.75)]).unwrap();
        assert_eq!(jpeg_size(&marked), Some((640, 360)));
        let rgb = one_picture(
            "appsrc name=src caps=image/jpeg ! jpegdec ! videoconvert ! \
             video/x-raw,format=RGB ! appsink name=sink sync=false",
            &marked,
            &[],
        )
        .unwrap();
        // Rows of 640 × 3 bytes. The box's left edge is at x = 160, its top at y = 90.
        let px = |x: usize, y: usize| &rgb[y * 1920 + x * 3..y * 1920 + x * 3 + 3];
        let green = |p: &[u8]| p[1] > 150 && p[0] < 100 && p[2] < 120;
        assert!(
            green(px(161, 180)) && green(px(320, 91)),
            "{:?}",
            px(161, 180)
        );
        assert!(
            !green(px(320, 180)) && !green(px(100, 100)),
            "{:?}",
            px(320, 180)
        );
        assert!(
            annotate(b"not a jpeg", &[]).is_err(),
            "a broken picture is an error"
        );
    }
}
