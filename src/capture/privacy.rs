//! Privacy masks: polygons of the picture blacked out in every raw frame at the
//! pipeline's `privacy` point (an `identity` before its `tee`), so the encoder, the
//! snapshot and the analysis branches never see what is behind them: no live view, clip,
//! RTSP or KVS stream and no still image can show it.
//!
//! For each plane the masked pixels are worked out once per picture size, as runs of
//! columns on each row (a pixel is masked when its centre is inside a polygon); a frame
//! then costs one `fill` per run. A format this file does not know is blacked out
//! whole: a mask never fails open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use gstreamer_video::VideoFormat;
use tokio::sync::watch;

use crate::events::Polygon;

/// The runs of masked columns (first, end) on each row of a plane.
type Runs = Vec<Vec<(usize, usize)>>;

/// The runs of masked columns on each row of a `width × height` plane.
fn runs(masks: &[Polygon], width: usize, height: usize) -> Runs {
    (0..height)
        .map(|y| {
            let fy = (y as f32 + 0.5) / height as f32;
            let mut spans: Vec<(usize, usize)> = Vec::new();
            for poly in masks {
                let mut xs = crossings(poly, fy);
                xs.sort_by(f32::total_cmp);
                for pair in xs.chunks_exact(2) {
                    // Columns whose centre (x + 0.5) / width lies within the pair.
                    let first = (pair[0] * width as f32 - 0.5).ceil().max(0.0) as usize;
                    let end = ((pair[1] * width as f32 - 0.5).floor() + 1.0).max(0.0) as usize;
                    let end = end.min(width);
                    if first < end {
                        spans.push((first, end));
                    }
                }
            }
            merge(spans)
        })
        .collect()
}

/// Where the horizontal line at `y` crosses the polygon's edges (in picture fractions).
fn crossings(poly: &Polygon, y: f32) -> Vec<f32> {
    let pts = &poly.0;
    let mut xs = Vec::new();
    for i in 0..pts.len() {
        let [x0, y0] = pts[i];
        let [x1, y1] = pts[(i + 1) % pts.len()];
        if (y0 > y) != (y1 > y) {
            xs.push(x0 + (y - y0) * (x1 - x0) / (y1 - y0));
        }
    }
    xs
}

fn merge(mut spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    spans.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The masked runs of each plane of one picture format and size.
struct Plan {
    info: gst_video::VideoInfo,
    /// Per plane: the runs of each row, the byte that means black there, and the bytes
    /// of a pixel.
    planes: Vec<(Runs, u8, usize)>,
}

impl Plan {
    /// `None` for a format whose planes this does not know (it is blacked out whole).
    fn new(masks: &[Polygon], info: &gst_video::VideoInfo) -> Option<Plan> {
        let (w, h) = (info.width() as usize, info.height() as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        // (width, height, black, bytes per pixel) of each plane.
        let planes: Vec<(usize, usize, u8, usize)> = match info.format() {
            VideoFormat::I420 | VideoFormat::Yv12 => {
                vec![(w, h, 16, 1), (cw, ch, 128, 1), (cw, ch, 128, 1)]
            }
            VideoFormat::Nv12 | VideoFormat::Nv21 => vec![(w, h, 16, 1), (cw, ch, 128, 2)],
            VideoFormat::Gray8 => vec![(w, h, 0, 1)],
            VideoFormat::Rgb | VideoFormat::Bgr => vec![(w, h, 0, 3)],
            VideoFormat::Rgbx | VideoFormat::Bgrx | VideoFormat::Xrgb | VideoFormat::Xbgr => {
                vec![(w, h, 0, 4)]
            }
            _ => return None,
        };
        Some(Plan {
            info: info.clone(),
            planes: planes
                .into_iter()
                .map(|(pw, ph, black, bpp)| (runs(masks, pw, ph), black, bpp))
                .collect(),
        })
    }

    fn apply(&self, buffer: &mut gst::BufferRef) -> bool {
        let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &self.info)
        else {
            return false;
        };
        for (i, (rows, black, bpp)) in self.planes.iter().enumerate() {
            let stride = frame.plane_stride()[i].max(0) as usize;
            let Ok(data) = frame.plane_data_mut(i as u32) else {
                return false;
            };
            for (y, spans) in rows.iter().enumerate() {
                for &(a, b) in spans {
                    let (start, end) = (y * stride + a * bpp, y * stride + b * bpp);
                    if let Some(px) = data.get_mut(start..end) {
                        px.fill(*black);
                    }
                }
            }
        }
        true
    }
}

/// The plan in use: for which caps and masks it was made.
type Planned = (gst::Caps, Arc<Vec<Polygon>>, Option<Arc<Plan>>);

/// Blacks out the masks `masks` holds (as they change) in every frame leaving
/// `element`'s src pad.
pub fn attach(element: &gst::Element, masks: watch::Receiver<Arc<Vec<Polygon>>>) -> bool {
    let Some(pad) = element.static_pad("src") else {
        return false;
    };
    // The probe runs on the one streaming thread: the lock is never contended.
    let plan: Mutex<Option<Planned>> = Mutex::new(None);
    let warned = AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, probe| {
        let masks = Arc::clone(&masks.borrow());
        if masks.is_empty() {
            return gst::PadProbeReturn::Ok;
        }
        let Some(caps) = pad.current_caps() else {
            return gst::PadProbeReturn::Drop;
        };
        let current = {
            let mut plan = plan.lock().unwrap_or_else(|e| e.into_inner());
            let stale = |(c, m, _): &Planned| *c != caps || !Arc::ptr_eq(m, &masks);
            if plan.as_ref().is_none_or(stale) {
                let made = gst_video::VideoInfo::from_caps(&caps)
                    .ok()
                    .and_then(|info| Plan::new(&masks, &info))
                    .map(Arc::new);
                *plan = Some((caps, masks, made));
            }
            plan.as_ref().and_then(|(_, _, p)| p.clone())
        };
        let Some(gst::PadProbeData::Buffer(buffer)) = probe.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let buffer = buffer.make_mut();
        if !current.is_some_and(|p| p.apply(buffer)) {
            if !warned.swap(true, Ordering::Relaxed) {
                tracing::error!("privacy masks: this picture format is not supported at the privacy point (use I420 or NV12); whole frames are blacked out");
            }
            if let Ok(mut map) = buffer.map_writable() {
                map.as_mut_slice().fill(0);
            }
        }
        gst::PadProbeReturn::Ok
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rectangle_masks_the_pixels_whose_centres_it_covers() {
        // The right half of a 4×2 picture.
        let r = runs(&[Polygon::from_xywh([0.5, 0.0, 0.5, 1.0])], 4, 2);
        assert_eq!(r, vec![vec![(2, 4)], vec![(2, 4)]]);
        // A triangle over the top-left corner: more of the top row than the bottom.
        let t = Polygon(vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        let r = runs(&[t], 4, 4);
        assert_eq!(r[0], vec![(0, 4)]);
        assert_eq!(r[3], vec![(0, 1)]);
    }

    #[test]
    fn overlapping_masks_merge_and_masks_outside_mask_nothing() {
        let a = Polygon::from_xywh([0.0, 0.0, 0.5, 1.0]);
        let b = Polygon::from_xywh([0.25, 0.0, 0.5, 1.0]);
        assert_eq!(runs(&[a, b], 8, 1), vec![vec![(0, 6)]]);
        assert_eq!(runs(&[], 8, 1), vec![Vec::<(usize, usize)>::new()]);
    }
}
