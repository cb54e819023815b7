//! The Kinesis Video stream: set-up (describe, create when missing), data endpoints, and
//! playback URLs (HLS over the event's producer-timestamp range, or live).

pub use aws_sdk_kinesisvideo::types::ApiName;
use aws_sdk_kinesisvideoarchivedmedia::primitives::ByteStream;
use aws_sdk_kinesisvideoarchivedmedia::primitives::DateTime as AwsTime;
use aws_sdk_kinesisvideoarchivedmedia::types::{
    ClipFragmentSelector, ClipFragmentSelectorType, ClipTimestampRange, ContainerFormat,
    HlsFragmentSelector, HlsFragmentSelectorType, HlsPlaybackMode, HlsTimestampRange,
};
use chrono::{DateTime, Utc};
use tracing::info;

use super::{Aws, AwsError};

/// Playback URLs live between 5 min and 12 h.
pub const EXPIRES_RANGE: std::ops::RangeInclusive<u32> = 300..=43_200;
/// ON_DEMAND playback covers at most 24 h.
const MAX_RANGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The media type of a stream of H.264 only.
pub const VIDEO: &str = "video/h264";
/// The media type of a stream of H.264 (track 1) and AAC (track 2).
pub const VIDEO_AUDIO: &str = "video/h264,audio/aac";

/// Makes sure the stream exists (creating it with `media_type` when allowed); returns
/// its ARN.
pub async fn ensure_stream(
    aws: &Aws,
    name: &str,
    media_type: &str,
    retention_hours: u32,
    create_if_missing: bool,
) -> Result<String, AwsError> {
    let kv = aws.kinesis_video();
    match kv.describe_stream().stream_name(name).send().await {
        Ok(out) => out
            .stream_info()
            .and_then(|s| s.stream_arn())
            .map(str::to_owned)
            .ok_or_else(|| AwsError::missing("DescribeStream", "stream ARN")),
        Err(e)
            if create_if_missing
                && e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            info!(
                stream = name,
                media_type, retention_hours, "creating the Kinesis Video stream"
            );
            let out = kv
                .create_stream()
                .stream_name(name)
                .media_type(media_type)
                .data_retention_in_hours(i32::try_from(retention_hours).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| AwsError::call("CreateStream", &e))?;
            out.stream_arn()
                .map(str::to_owned)
                .ok_or_else(|| AwsError::missing("CreateStream", "stream ARN"))
        }
        Err(e) => Err(AwsError::call("DescribeStream", &e)),
    }
}

/// The data endpoint of the stream for `api` (PutMedia, HLS, GetClip); the override
/// endpoint when pointed at local fakes.
pub async fn data_endpoint(aws: &Aws, name: &str, api: ApiName) -> Result<String, AwsError> {
    let out = aws
        .kinesis_video()
        .get_data_endpoint()
        .stream_name(name)
        .api_name(api)
        .send()
        .await
        .map_err(|e| AwsError::call("GetDataEndpoint", &e))?;
    let endpoint = out
        .data_endpoint()
        .ok_or_else(|| AwsError::missing("GetDataEndpoint", "endpoint"))?;
    // Against local fakes, an endpoint off this machine is replaced by the override.
    if let Some(data) = aws.local_data_endpoint() {
        return Ok(data.to_owned());
    }
    match aws.local_endpoint() {
        Some(local) if !endpoint.starts_with("http://127.0.0.1") => Ok(local.to_owned()),
        _ => Ok(endpoint.to_owned()),
    }
}

/// An HLS URL: ON_DEMAND over `range` (producer timestamps, fragmented MP4), or LIVE.
pub async fn hls_url(
    aws: &Aws,
    name: &str,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    expires_s: u32,
) -> Result<String, AwsError> {
    if !EXPIRES_RANGE.contains(&expires_s) {
        return Err(AwsError::Call {
            call: "GetHLSStreamingSessionURL",
            message: format!("expires must be between 300 and 43200 s, got {expires_s}"),
        });
    }
    let endpoint = data_endpoint(aws, name, ApiName::GetHlsStreamingSessionUrl).await?;
    let mut req = aws
        .archived_media(&endpoint)
        .get_hls_streaming_session_url()
        .stream_name(name)
        .container_format(ContainerFormat::FragmentedMp4)
        .expires(i32::try_from(expires_s).unwrap_or(43_200));
    req = match range {
        Some((start, end)) => {
            let end = end.min(start + MAX_RANGE);
            let to_aws = |t: DateTime<Utc>| AwsTime::from_millis(t.timestamp_millis());
            req.playback_mode(HlsPlaybackMode::OnDemand)
                .hls_fragment_selector(
                    HlsFragmentSelector::builder()
                        .fragment_selector_type(HlsFragmentSelectorType::ProducerTimestamp)
                        .timestamp_range(
                            HlsTimestampRange::builder()
                                .start_timestamp(to_aws(start))
                                .end_timestamp(to_aws(end))
                                .build(),
                        )
                        .build(),
                )
        }
        None => req.playback_mode(HlsPlaybackMode::Live),
    };
    let out = req
        .send()
        .await
        .map_err(|e| AwsError::call("GetHLSStreamingSessionURL", &e))?;
    out.hls_streaming_session_url()
        .map(str::to_owned)
        .ok_or_else(|| AwsError::missing("GetHLSStreamingSessionURL", "URL"))
}

/// An MP4 of the stream over `range` (GetClip, producer timestamps), as a byte stream.
/// The service limits a clip to 100 MB and 200 fragments.
pub async fn clip(
    aws: &Aws,
    name: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> Result<ByteStream, AwsError> {
    let endpoint = data_endpoint(aws, name, ApiName::GetClip).await?;
    let to_aws = |t: DateTime<Utc>| AwsTime::from_millis(t.timestamp_millis());
    let bad =
        |e: aws_sdk_kinesisvideoarchivedmedia::error::BuildError| AwsError::call("GetClip", &e);
    let selector = ClipFragmentSelector::builder()
        .fragment_selector_type(ClipFragmentSelectorType::ProducerTimestamp)
        .timestamp_range(
            ClipTimestampRange::builder()
                .start_timestamp(to_aws(start))
                .end_timestamp(to_aws(end.min(start + MAX_RANGE)))
                .build()
                .map_err(bad)?,
        )
        .build()
        .map_err(bad)?;
    let out = aws
        .archived_media(&endpoint)
        .get_clip()
        .stream_name(name)
        .clip_fragment_selector(selector)
        .send()
        .await
        .map_err(|e| AwsError::call("GetClip", &e))?;
    Ok(out.payload)
}
