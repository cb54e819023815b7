//! Pipeline files: finding `<name>.pipeline`, filling its `${var}` placeholders from the
//! config, and rewriting elements (tests swap hardware sources for test sources).
//!
//! A file may end with an audio part: everything after a line `@audio` is a second,
//! separate pipeline, run only with `[audio] enabled`, so a microphone that fails never
//! stops the video.

use std::path::{Path, PathBuf};

use crate::config::{Audio, Camera};

use super::CaptureError;

/// Where pipeline files are looked for when `camera.pipeline_dir` is not set.
pub const SEARCH_DIRS: &[&str] = &[
    "/etc/edgecam/pipelines",
    "/usr/share/edgecam/pipelines",
    "pipelines",
];

/// A rendered pipeline: launch text with every placeholder filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSpec {
    /// The file it came from (for messages).
    pub path: PathBuf,
    pub text: String,
}

/// Finds the file for `camera.pipeline`.
pub fn locate(camera: &Camera) -> Result<PathBuf, CaptureError> {
    let file = format!("{}.pipeline", camera.pipeline);
    let dirs: Vec<PathBuf> = match &camera.pipeline_dir {
        Some(dir) => vec![dir.clone()],
        None => SEARCH_DIRS.iter().map(PathBuf::from).collect(),
    };
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .ok_or_else(|| CaptureError::PipelineNotFound {
            file,
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The line that starts a file's audio part.
pub const AUDIO_MARKER: &str = "@audio";

fn read(path: &Path) -> Result<String, CaptureError> {
    std::fs::read_to_string(path).map_err(|source| CaptureError::ReadPipeline {
        path: path.to_owned(),
        source,
    })
}

/// A file's video part and, when it has one, its audio part.
pub fn split(raw: &str) -> (&str, Option<&str>) {
    let mut at = 0;
    for line in raw.split_inclusive('\n') {
        if line.trim() == AUDIO_MARKER {
            return (&raw[..at], Some(&raw[at + line.len()..]));
        }
        at += line.len();
    }
    (raw, None)
}

/// The object detector's pictures: the model's input fitted to the camera's shape (so
/// nothing is stretched; the detector pads the rest), and at most how many a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectPicture {
    /// The model's input, `[width, height]`.
    pub input: [u32; 2],
    pub fps: f64,
}

impl Default for DetectPicture {
    /// The shipped model's.
    fn default() -> Self {
        Self {
            input: [320, 320],
            fps: 2.0,
        }
    }
}

impl DetectPicture {
    /// The picture's `[width, height]`: the camera's shape scaled to fit the input, even.
    pub fn size(&self, c: &Camera) -> [u32; 2] {
        let (cw, ch) = (f64::from(c.width.max(1)), f64::from(c.height.max(1)));
        let scale = (f64::from(self.input[0]) / cw).min(f64::from(self.input[1]) / ch);
        let even = |v: f64| ((v.round() as u32) & !1).max(2);
        [even(cw * scale), even(ch * scale)]
    }
}

/// Reads and renders the configured pipeline file's video part.
pub fn load(camera: &Camera) -> Result<PipelineSpec, CaptureError> {
    load_with(camera, &DetectPicture::default())
}

/// `load`, with the detector's pictures made for `detect`.
pub fn load_with(camera: &Camera, detect: &DetectPicture) -> Result<PipelineSpec, CaptureError> {
    let path = locate(camera)?;
    let raw = read(&path)?;
    let mut vars = variables(camera);
    vars.extend(detect_variables(camera, detect));
    let text =
        render_with(split(&raw).0, &vars).map_err(|var| CaptureError::UnknownPlaceholder {
            path: path.clone(),
            var,
            known: known_placeholders(),
        })?;
    Ok(PipelineSpec { path, text })
}

/// Reads and renders the configured pipeline file's audio part; `None` when audio is off
/// or the file has no audio part.
pub fn load_audio(camera: &Camera, audio: &Audio) -> Result<Option<PipelineSpec>, CaptureError> {
    if !audio.enabled {
        return Ok(None);
    }
    let path = locate(camera)?;
    let raw = read(&path)?;
    let Some(part) = split(&raw).1 else {
        return Ok(None);
    };
    let mut vars = variables(camera);
    vars.extend(audio_variables(audio));
    let mut text = render_with(part, &vars).map_err(|var| CaptureError::UnknownPlaceholder {
        path: path.clone(),
        var,
        known: known_placeholders(),
    })?;
    if audio.speaker && audio.record_talk {
        text =
            mix_talk(&text, audio).ok_or_else(|| CaptureError::NoTalkMix { path: path.clone() })?;
    }
    Ok(Some(PipelineSpec { path, text }))
}

/// With `audio.record_talk`, the audio part's raw sound (`tee name=pcm`) goes through a
/// mixer that also takes what viewers say, from the speaker pipeline; so every encode
/// after it (AAC for clips and the cloud, Opus for viewers) has both.
fn mix_talk(text: &str, audio: &Audio) -> Option<String> {
    let at = text.find("tee name=pcm")?;
    let caps = format!(
        "audio/x-raw,rate={},channels={}",
        audio.sample_rate, audio.channels
    );
    Some(format!(
        "{before}audioconvert ! audiomixer name=talkmix ! {rest}\n\
         interaudiosrc channel={channel} ! audioconvert ! audioresample ! {caps} \
         ! queue max-size-time=200000000 leaky=downstream ! talkmix.\n",
        before = &text[..at],
        rest = &text[at..],
        channel = crate::config::TALK_CHANNEL,
    ))
}

/// The placeholder values an audio part may use, beside the video ones.
pub fn audio_variables(a: &Audio) -> Vec<(&'static str, String)> {
    vec![
        ("audio_device", a.device.clone()),
        ("audio_rate", a.sample_rate.to_string()),
        ("audio_channels", a.channels.to_string()),
        (
            "opus_bitrate_bps",
            (u64::from(a.opus_bitrate_kbps) * 1000).to_string(),
        ),
        (
            "aac_bitrate_bps",
            (u64::from(a.aac_bitrate_kbps) * 1000).to_string(),
        ),
    ]
}

/// The placeholder values for the detector's branch.
pub fn detect_variables(c: &Camera, d: &DetectPicture) -> Vec<(&'static str, String)> {
    let [w, h] = d.size(c);
    vec![
        ("detect_width", w.to_string()),
        ("detect_height", h.to_string()),
        // videorate takes whole frames a second; the appsink keeps to the exact rate.
        ("detect_fps", (d.fps.ceil().max(1.0) as u32).to_string()),
    ]
}

/// The names of the video part's placeholders, for an error that names an unknown one.
fn known_placeholders() -> String {
    let c = Camera::default();
    let mut vars = variables(&c);
    vars.extend(detect_variables(&c, &DetectPicture::default()));
    vars.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

/// The placeholder values a pipeline file may use.
pub fn variables(c: &Camera) -> Vec<(&'static str, String)> {
    vec![
        ("width", c.width.to_string()),
        ("height", c.height.to_string()),
        ("fps", c.fps.to_string()),
        ("bitrate_kbps", c.bitrate_kbps.to_string()),
        (
            "bitrate_bps",
            (u64::from(c.bitrate_kbps) * 1000).to_string(),
        ),
        ("keyframe_interval_s", c.keyframe_interval_s.to_string()),
        (
            "keyframe_interval_frames",
            c.keyframe_interval_frames().to_string(),
        ),
        ("device", c.device.clone()),
        ("url", c.url.clone()),
        ("analysis_width", c.analysis_width.to_string()),
        ("analysis_height", c.analysis_height.to_string()),
        ("analysis_fps", c.analysis_fps.to_string()),
        // The test scene is drawn at a quarter size and scaled up, so its ball (a fixed
        // 20 px radius in videotestsrc) is as big a part of the picture at any size.
        ("scene_width", scene_side(c.width, 64).to_string()),
        ("scene_height", scene_side(c.height, 48).to_string()),
        // The scene's person stands at the bottom, 70 % of the picture's height.
        ("person_side", person_side(c.height).to_string()),
        (
            "person_top",
            c.height.saturating_sub(person_side(c.height)).to_string(),
        ),
    ]
}

/// The side of the scene's (square) person photograph: 70 % of the height, even.
fn person_side(height: u32) -> u32 {
    ((height * 7 / 10) & !1).max(2)
}

/// A quarter of `side`, even, and at least `min`.
fn scene_side(side: u32, min: u32) -> u32 {
    ((side / 4) & !1).max(min)
}

/// Drops `#` comment lines and fills `${var}`; an unknown name is returned as the error.
/// Values are escaped so they are safe inside double quotes in the launch text.
pub fn render(raw: &str, camera: &Camera) -> Result<String, String> {
    let mut vars = variables(camera);
    vars.extend(detect_variables(camera, &DetectPicture::default()));
    render_with(raw, &vars)
}

/// `render` with the given values.
pub fn render_with(raw: &str, vars: &[(&'static str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    for line in raw.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| after.to_owned())?;
            let name = &after[..end];
            let value = vars
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
                .ok_or_else(|| name.to_owned())?;
            out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    Ok(out)
}

/// Replaces each element made by `factory` with `replacement` launch text, keeping the
/// element's `name=` (so `encoder`, `source` stay addressable). Used to run pipeline files
/// that need hardware on test sources.
pub fn swap_elements(text: &str, swaps: &[(&str, &str)]) -> String {
    text.split('!')
        .map(|segment| {
            let trimmed = segment.trim();
            let factory = trimmed.split_whitespace().next().unwrap_or("");
            match swaps.iter().find(|(f, _)| *f == factory) {
                Some((_, replacement)) => {
                    // The name goes on the first element of the replacement.
                    let name = trimmed.split_whitespace().find(|t| t.starts_with("name="));
                    match (name, replacement.split_once(' ')) {
                        (Some(n), Some((factory, props))) => format!(" {factory} {n} {props} "),
                        (Some(n), None) => format!(" {replacement} {n} "),
                        (None, _) => format!(" {replacement} "),
                    }
                }
                None => segment.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("!")
}

/// The file name a spec came from, for log fields.
pub fn display_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders_and_drops_comments() {
        let camera = Camera {
            width: 640,
            fps: 10,
            keyframe_interval_s: 2.0,
            ..Camera::default()
        };
        let raw = "# a comment\nvideotestsrc ! video/x-raw,width=${width},framerate=${fps}/1\n  ! x264enc key-int-max=${keyframe_interval_frames}\n";
        assert_eq!(
            render(raw, &camera).unwrap(),
            "videotestsrc ! video/x-raw,width=640,framerate=10/1\n  ! x264enc key-int-max=20\n"
        );
    }

    #[test]
    fn an_audio_part_starts_at_its_marker_line() {
        let raw = "video ! appsink name=encoded\n  @audio  \naudio ! appsink name=aac\n";
        assert_eq!(
            split(raw),
            (
                "video ! appsink name=encoded\n",
                Some("audio ! appsink name=aac\n")
            )
        );
        assert_eq!(split("video only\n"), ("video only\n", None));
        assert_eq!(
            split("x name=@audio\n"),
            ("x name=@audio\n", None),
            "only a line of its own"
        );
    }

    #[test]
    fn unknown_placeholder_is_named() {
        assert_eq!(
            render("a ${nope} b", &Camera::default()),
            Err("nope".to_string())
        );
        assert_eq!(
            render("a ${unterminated", &Camera::default()),
            Err("unterminated".to_string())
        );
    }

    #[test]
    fn values_are_escaped_for_quotes() {
        let camera = Camera {
            url: r#"rtsp://u:p"w\d@cam/x"#.into(),
            ..Camera::default()
        };
        assert_eq!(
            render(r#"location="${url}""#, &camera).unwrap(),
            "location=\"rtsp://u:p\\\"w\\\\d@cam/x\"\n"
        );
    }

    #[test]
    fn swap_keeps_the_element_name() {
        let text = "v4l2src device=/dev/video0 name=source ! videoconvert ! v4l2h264enc name=encoder extra-controls=\"c,a=1\" ! appsink name=encoded";
        let swapped = swap_elements(
            text,
            &[
                ("v4l2src", "videotestsrc is-live=true"),
                ("v4l2h264enc", "x264enc"),
            ],
        );
        assert_eq!(
            swapped.split_whitespace().collect::<Vec<_>>().join(" "),
            "videotestsrc name=source is-live=true ! videoconvert ! x264enc name=encoder ! appsink name=encoded"
        );
    }

    #[test]
    fn missing_file_lists_where_it_looked() {
        let camera = Camera {
            pipeline: "nonexistent".into(),
            pipeline_dir: Some("/nowhere".into()),
            ..Camera::default()
        };
        let err = locate(&camera).unwrap_err().to_string();
        assert!(
            err.contains("nonexistent.pipeline") && err.contains("/nowhere"),
            "{err}"
        );
    }
}
