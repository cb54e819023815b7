//! Still images of the stream's video: the stream's image generation configuration
//! (KVS extracts images of tagged fragments into S3), its SNS notification
//! configuration, and GetImages for an event's time range.

use aws_sdk_kinesisvideo::types::{
    ConfigurationStatus, Format, FormatConfigKey, ImageGenerationConfiguration,
    ImageGenerationDestinationConfig, ImageSelectorType, NotificationConfiguration,
    NotificationDestinationConfig,
};
use aws_sdk_kinesisvideoarchivedmedia::primitives::DateTime as AwsTime;
use aws_sdk_kinesisvideoarchivedmedia::types as media;
use base64::Engine;
use chrono::{DateTime, Utc};

use super::stream::{data_endpoint, ApiName};
use super::{Aws, AwsError};

/// The fragment tag that asks KVS for images of a fragment (KVS developer guide,
/// "Automated real-time image generation"); it has no value.
pub const IMAGE_TAG: &str = "AWS_KINESISVIDEO_IMAGE_GENERATION";
/// The fragment tag whose value prefixes the S3 key of its images.
pub const IMAGE_PREFIX_TAG: &str = "AWS_KINESISVIDEO_IMAGE_PREFIX";
/// The fragment tag that has KVS notify the stream's SNS topic.
pub const NOTIFICATION_TAG: &str = "AWS_KINESISVIDEO_NOTIFICATION";
/// GetImages covers at most 300 s per call.
const MAX_SPAN: chrono::TimeDelta = chrono::TimeDelta::seconds(300);

/// How images are made, from `[upload]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSettings {
    pub s3_uri: String,
    pub region: String,
    pub png: bool,
    pub quality: u32,
    pub interval_ms: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl ImageSettings {
    /// The settings when `[upload] images_s3_uri` is set.
    pub fn from_config(upload: &crate::config::Upload, aws_region: &str) -> Option<Self> {
        upload.images().then(|| Self::of(upload, aws_region))
    }

    /// The format, size and interval of `[upload]` (whether or not images go to S3).
    pub fn of(upload: &crate::config::Upload, aws_region: &str) -> Self {
        Self {
            s3_uri: upload.images_s3_uri.clone().unwrap_or_default(),
            region: upload
                .images_region
                .clone()
                .unwrap_or_else(|| aws_region.to_owned()),
            png: upload.images_format == crate::config::ImageFormat::Png,
            quality: upload.images_quality,
            interval_ms: upload.images_interval_ms,
            width: Some(upload.images_width).filter(|w| *w > 0),
            height: Some(upload.images_height).filter(|h| *h > 0),
        }
    }

    fn format(&self) -> Format {
        if self.png {
            Format::Png
        } else {
            Format::Jpeg
        }
    }

    /// The file extension of the images.
    pub fn extension(&self) -> &'static str {
        if self.png {
            "png"
        } else {
            "jpg"
        }
    }
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Sets the stream's image generation configuration (UpdateImageGenerationConfiguration).
pub async fn configure_images(aws: &Aws, stream: &str, s: &ImageSettings) -> Result<(), AwsError> {
    let bad = |e: aws_sdk_kinesisvideo::error::BuildError| {
        AwsError::call("UpdateImageGenerationConfiguration", &e)
    };
    let destination = ImageGenerationDestinationConfig::builder()
        .uri(&s.s3_uri)
        .destination_region(&s.region)
        .build()
        .map_err(bad)?;
    let mut config = ImageGenerationConfiguration::builder()
        .status(ConfigurationStatus::Enabled)
        .image_selector_type(ImageSelectorType::ProducerTimestamp)
        .destination_config(destination)
        .sampling_interval(int(s.interval_ms))
        .format(s.format())
        .set_width_pixels(s.width.map(int))
        .set_height_pixels(s.height.map(int));
    if !s.png {
        config = config.format_config(FormatConfigKey::JpegQuality, s.quality.to_string());
    }
    aws.kinesis_video()
        .update_image_generation_configuration()
        .stream_name(stream)
        .image_generation_configuration(config.build().map_err(bad)?)
        .send()
        .await
        .map_err(|e| AwsError::call("UpdateImageGenerationConfiguration", &e))?;
    Ok(())
}

/// Sets the stream's SNS notification topic (UpdateNotificationConfiguration).
pub async fn configure_notifications(
    aws: &Aws,
    stream: &str,
    topic_arn: &str,
) -> Result<(), AwsError> {
    let bad = |e: aws_sdk_kinesisvideo::error::BuildError| {
        AwsError::call("UpdateNotificationConfiguration", &e)
    };
    let config = NotificationConfiguration::builder()
        .status(ConfigurationStatus::Enabled)
        .destination_config(
            NotificationDestinationConfig::builder()
                .uri(topic_arn)
                .build()
                .map_err(bad)?,
        )
        .build()
        .map_err(bad)?;
    aws.kinesis_video()
        .update_notification_configuration()
        .stream_name(stream)
        .notification_configuration(config)
        .send()
        .await
        .map_err(|e| AwsError::call("UpdateNotificationConfiguration", &e))?;
    Ok(())
}

/// One image GetImages answered: its producer time, and the picture or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub at: DateTime<Utc>,
    pub content: Result<Vec<u8>, String>,
}

/// Every image of `range` (producer timestamps), one per `s.interval_ms`, in calls of at
/// most 300 s and pages of the service's size.
pub async fn images(
    aws: &Aws,
    stream: &str,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    s: &ImageSettings,
) -> Result<Vec<Image>, AwsError> {
    let endpoint = data_endpoint(aws, stream, ApiName::GetImages).await?;
    let client = aws.archived_media(&endpoint);
    let to_aws = |t: DateTime<Utc>| AwsTime::from_millis(t.timestamp_millis());
    let format = if s.png {
        media::Format::Png
    } else {
        media::Format::Jpeg
    };
    let mut out = Vec::new();
    let mut from = start;
    while from <= end {
        let to = end.min(from + MAX_SPAN);
        let mut token: Option<String> = None;
        loop {
            let mut req = client
                .get_images()
                .stream_name(stream)
                .image_selector_type(media::ImageSelectorType::ProducerTimestamp)
                .start_timestamp(to_aws(from))
                .end_timestamp(to_aws(to))
                .sampling_interval(int(s.interval_ms))
                .format(format.clone())
                .set_width_pixels(s.width.map(int))
                .set_height_pixels(s.height.map(int))
                .set_next_token(token.take());
            if !s.png {
                req = req.format_config(media::FormatConfigKey::JpegQuality, s.quality.to_string());
            }
            let page = req
                .send()
                .await
                .map_err(|e| AwsError::call("GetImages", &e))?;
            for image in page.images() {
                out.push(decode(image));
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        if to == end {
            break;
        }
        from = to + chrono::TimeDelta::milliseconds(1);
    }
    Ok(out)
}

fn decode(image: &media::Image) -> Image {
    let at = image
        .time_stamp()
        .and_then(|t| DateTime::from_timestamp_millis(t.to_millis().ok()?))
        .unwrap_or_default();
    let content = match (image.image_content(), image.error()) {
        (Some(b64), _) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("unreadable image content: {e}")),
        (None, Some(e)) => Err(e.as_str().to_owned()),
        (None, None) => Err("no image".to_owned()),
    };
    Image { at, content }
}
