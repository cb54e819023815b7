//! GetImages on the fake data endpoint, as the KVS archived-media API reference describes
//! it: SigV4 verified, the request checked (producer or server timestamps, a range of at
//! most 300 s, a sampling interval of at least 200 ms, JPEG or PNG, JPEG quality 1-100,
//! sizes within 3840×2160), one image per interval from the start, a picture where a
//! persisted fragment of the stream covers the time and `NO_MEDIA` where none does, 25
//! per page with a `NextToken`. The pictures are real (made by ffmpeg), not of the video.

use std::process::Command;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Response;
use serde_json::{json, Value};

use super::putmedia_fake::{Body, FakePutMedia};
use super::sigv4;

const PAGE: usize = 25;

fn answer(status: u16, body: Value) -> Response<Body> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if status != 200 {
        r = r.header("x-amzn-ErrorType", "InvalidArgumentException");
    }
    r.body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

/// A real picture in `format`, made once per call (tests are short).
fn picture(format: &str) -> Vec<u8> {
    let codec = if format == "PNG" { "png" } else { "mjpeg" };
    let out = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48",
            "-frames:v",
            "1",
        ])
        .args(["-f", "image2pipe", "-vcodec", codec, "-"])
        .output()
        .expect("ffmpeg is installed (packaging/install-deps.sh --test)");
    assert!(out.status.success(), "ffmpeg made no picture");
    out.stdout
}

/// The request's problem, if the service would refuse it.
fn check(req: &Value) -> Result<(), String> {
    if req["StreamName"].as_str().is_none() == req["StreamARN"].as_str().is_none() {
        return Err("exactly one of StreamName and StreamARN".into());
    }
    if !matches!(
        req["ImageSelectorType"].as_str(),
        Some("PRODUCER_TIMESTAMP" | "SERVER_TIMESTAMP")
    ) {
        return Err(format!("ImageSelectorType {}", req["ImageSelectorType"]));
    }
    let (start, end) = (req["StartTimestamp"].as_f64(), req["EndTimestamp"].as_f64());
    let (Some(start), Some(end)) = (start, end) else {
        return Err("StartTimestamp and EndTimestamp are required".into());
    };
    if end < start || end - start > 300.0 {
        return Err(format!("the range {start}..{end} is over 300 s"));
    }
    if req["SamplingInterval"].as_i64().is_some_and(|i| i < 200) {
        return Err(format!(
            "SamplingInterval {} < 200",
            req["SamplingInterval"]
        ));
    }
    let format = req["Format"].as_str().unwrap_or_default();
    if !matches!(format, "JPEG" | "PNG") {
        return Err(format!("Format {format:?}"));
    }
    picture_options(req)
}

/// `FormatConfig` (JPEGQuality 1–100 only) and `WidthPixels`/`HeightPixels` (within
/// 3840×2160), as GetImages and UpdateImageGenerationConfiguration both take them.
pub fn picture_options(v: &Value) -> Result<(), String> {
    if let Some(config) = v["FormatConfig"].as_object() {
        for (k, q) in config {
            let quality = q.as_str().and_then(|q| q.parse::<u32>().ok());
            if k != "JPEGQuality" || !quality.is_some_and(|q| (1..=100).contains(&q)) {
                return Err(format!("FormatConfig {k}={q}"));
            }
        }
    }
    let within = |key: &str, max: i64| v[key].as_i64().is_none_or(|n| (1..=max).contains(&n));
    if !within("WidthPixels", 3840) || !within("HeightPixels", 2160) {
        return Err("WidthPixels/HeightPixels out of range".into());
    }
    Ok(())
}

/// Answers `POST /getImages`.
pub fn get_images(
    fake: &FakePutMedia,
    parts: &http::request::Parts,
    body: &[u8],
) -> Response<Body> {
    fake.count_call("GetImages");
    let signed = sigv4::verify_headers(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        body,
        (fake.region(), "kinesisvideo"),
        chrono::Utc::now(),
    );
    if let Err(why) = signed {
        fake.record_error(format!("GetImages: {why}"));
        return answer(403, json!({"message": why}));
    }
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Err(why) = check(&req) {
        fake.record_error(format!("GetImages refused: {why}"));
        return answer(400, json!({"message": why}));
    }
    let stream = req["StreamName"].as_str().unwrap_or_default();
    let start_ms = (req["StartTimestamp"].as_f64().unwrap_or_default() * 1000.0).round() as u64;
    let end_ms = (req["EndTimestamp"].as_f64().unwrap_or_default() * 1000.0).round() as u64;
    let interval = req["SamplingInterval"].as_u64().unwrap_or(3000);
    let covered: Vec<(u64, u64)> = fake
        .persisted()
        .iter()
        .filter(|f| f.stream == stream)
        .map(|f| (f.timecode_ms, f.last_frame_ms))
        .collect();
    let times: Vec<u64> = (start_ms..=end_ms).step_by(interval as usize).collect();
    let skip: usize = req["NextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let pic = base64::engine::general_purpose::STANDARD
        .encode(picture(req["Format"].as_str().unwrap_or("JPEG")));
    let images: Vec<Value> = times
        .iter()
        .skip(skip)
        .take(PAGE)
        .map(|t| {
            let at = *t as f64 / 1000.0;
            if covered.iter().any(|(a, b)| (*a..=*b).contains(t)) {
                json!({"TimeStamp": at, "ImageContent": pic})
            } else {
                json!({"TimeStamp": at, "Error": "NO_MEDIA"})
            }
        })
        .collect();
    let mut out = json!({ "Images": images });
    if skip + PAGE < times.len() {
        out["NextToken"] = json!((skip + PAGE).to_string());
    }
    answer(200, out)
}
