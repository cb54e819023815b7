//! The PutMedia connection and what opening one takes: the stream (made when missing,
//! once), its image and notification settings (until they take), the data endpoint
//! (cached 45 minutes), the header from the first fragment's track, and signing with the
//! service's time once a refusal said ours is off.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tracing::{error, info, warn};

use crate::aws::{images, stream, Aws, AwsError};
use crate::upload::mkv::{self, TrackInfo};
use crate::upload::putmedia::{self, Connection, Event, PutMediaError, Target};
use crate::upload::UploadConfig;

/// The data endpoint is fetched again after this long.
const ENDPOINT_TTL: Duration = Duration::from_secs(45 * 60);

#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error(transparent)]
    Kvs(#[from] AwsError),
    #[error(transparent)]
    PutMedia(#[from] PutMediaError),
}

impl OpenError {
    /// Whether a later attempt may work, and the service's error code (0: none).
    pub fn retry(&self) -> (bool, u32) {
        match self {
            OpenError::PutMedia(p) => (p.is_retryable(), p.code()),
            OpenError::Kvs(_) => (true, 0),
        }
    }
}

struct Open {
    conn: Connection,
    track: TrackInfo,
}

pub(super) struct Link {
    aws: Aws,
    cfg: UploadConfig,
    open: Option<Open>,
    stream_ready: bool,
    /// The image and notification configurations are set (or not asked for).
    images_applied: bool,
    endpoint: Option<(String, Instant)>,
    /// The PutMedia service's clock minus ours, ms, learned from a refusal's `Date`.
    skew_ms: i64,
}

impl Link {
    pub fn new(aws: Aws, cfg: UploadConfig) -> Self {
        Self {
            aws,
            cfg,
            open: None,
            stream_ready: false,
            images_applied: false,
            endpoint: None,
            skew_ms: 0,
        }
    }

    /// The header's track of the open connection.
    pub fn track(&self) -> Option<&TrackInfo> {
        self.open.as_ref().map(|o| &o.track)
    }

    /// The next event of the open connection (never, while none is open).
    pub async fn next_event(&mut self) -> Event {
        match &mut self.open {
            Some(o) => o
                .conn
                .events
                .recv()
                .await
                .unwrap_or_else(|| Event::Closed("the connection ended".into())),
            None => std::future::pending().await,
        }
    }

    /// Closes the connection (its events go with it).
    pub fn close(&mut self) {
        self.open = None;
    }

    /// Writes a fragment; false when the connection is gone.
    pub async fn write(&self, bytes: Vec<u8>) -> bool {
        match &self.open {
            Some(o) => o.conn.write(Bytes::from(bytes)).await,
            None => false,
        }
    }

    /// Opens a connection whose header carries `track`, its producer time starting at
    /// `start_ms`. A failure forgets the endpoint (fetched again next time).
    pub async fn open(&mut self, track: TrackInfo, start_ms: u64) -> Result<(), OpenError> {
        let opened = self.try_open(&track, start_ms).await;
        match opened {
            Ok(conn) => {
                info!(stream = %self.cfg.stream_name, "PutMedia connection open");
                self.open = Some(Open { conn, track });
                Ok(())
            }
            Err(e) => {
                self.endpoint = None;
                Err(e)
            }
        }
    }

    async fn try_open(
        &mut self,
        track: &TrackInfo,
        start_ms: u64,
    ) -> Result<Connection, OpenError> {
        let aws = self.aws.clone();
        let name = self.cfg.stream_name.clone();
        if !self.stream_ready {
            let media_type = match self.cfg.audio {
                true => stream::VIDEO_AUDIO,
                false => stream::VIDEO,
            };
            let (hours, create) = (self.cfg.retention_hours, self.cfg.create_if_missing);
            stream::ensure_stream(&aws, &name, media_type, hours, create).await?;
            self.stream_ready = true;
        }
        if !self.images_applied {
            self.images_applied = self.apply_image_settings().await;
        }
        let endpoint = match &self.endpoint {
            Some((e, at)) if at.elapsed() < ENDPOINT_TTL => e.clone(),
            _ => {
                let e = stream::data_endpoint(&aws, &name, stream::ApiName::PutMedia).await?;
                self.endpoint = Some((e.clone(), Instant::now()));
                e
            }
        };
        let header = mkv::header(track, fastrand::u128(..).to_be_bytes(), fastrand::u64(1..));
        let creds = aws.credentials().await?;
        let target = Target {
            endpoint,
            stream_name: name,
            region: aws.region().to_owned(),
        };
        let producer_start =
            chrono::DateTime::from_timestamp_millis(start_ms as i64).unwrap_or_default();
        let signed_at = crate::aws::skewed(SystemTime::now(), self.skew_ms);
        let connected = putmedia::connect(
            &target,
            &creds,
            producer_start,
            Bytes::from(header),
            signed_at,
        )
        .await;
        if let Err(PutMediaError::Refused {
            skew_ms: Some(skew),
            ..
        }) = &connected
        {
            warn!(
                skew_ms = skew,
                "the local clock is off from Kinesis Video's; signing with its time"
            );
            self.skew_ms = *skew;
        }
        Ok(connected?)
    }

    /// Sets the stream's image generation and notification configurations, when asked
    /// for. A refusal is logged with what to fix and tried again with the next
    /// connection; video goes up meanwhile.
    async fn apply_image_settings(&self) -> bool {
        let (aws, name) = (&self.aws, &self.cfg.stream_name);
        let mut done = true;
        if let Some(s) = &self.cfg.images {
            match images::configure_images(aws, name, s).await {
                Ok(()) => {
                    info!(stream = %name, s3 = %s.s3_uri, interval_ms = s.interval_ms, "KVS makes still images of event video")
                }
                Err(e) => {
                    error!(error = %e, "cannot set up still images: check upload.images_* and that the role may call kinesisvideo:UpdateImageGenerationConfiguration");
                    done = false;
                }
            }
        }
        if let Some(topic) = &self.cfg.sns_topic_arn {
            match images::configure_notifications(aws, name, topic).await {
                Ok(()) => {
                    info!(stream = %name, topic = %topic, "KVS notifies the SNS topic of each event")
                }
                Err(e) => {
                    error!(error = %e, "cannot set up notifications: check upload.sns_topic_arn and that the role may call kinesisvideo:UpdateNotificationConfiguration");
                    done = false;
                }
            }
        }
        done
    }
}
