//! The connection side: opening PutMedia (stream set-up, data endpoint, header from the
//! first fragment) when the machine says, and writing the fragments it gives.

use super::*;

impl Task {
    pub(super) fn close(&mut self) {
        self.open = None;
        self.deps.metrics.connected.set(0);
    }

    /// The file holding a fragment's frames.
    async fn clip_file(&self, row: Option<&FragmentRow>) -> Result<std::path::PathBuf, String> {
        let clip_id = row
            .and_then(|r| r.clip_id.clone())
            .ok_or("frames no longer in memory")?;
        let clip = self
            .deps
            .index
            .clip(&clip_id)
            .await
            .map_err(|e| e.to_string())?;
        source::clip_path(&self.deps.data_dir, &clip.path).map_err(|e| e.to_string())
    }

    /// The stream header's track for a connection starting with fragment `id`, and the
    /// fragment's start (ms), without reading its frames.
    async fn track_of(&mut self, id: u64) -> Result<(TrackInfo, u64), String> {
        let first = self
            .units
            .get(&id)
            .and_then(|u| u.rows.first())
            .cloned()
            .ok_or("unknown fragment")?;
        let start = self.corrected(first.start_at).timestamp_millis().max(0) as u64;
        self.restore(std::slice::from_ref(&first)).await;
        if let Some(gop) = self.cache.get(first.id) {
            let frame = gop.frames.first().ok_or("empty fragment")?;
            let track = TrackInfo::from_keyframe(&frame.data)
                .map_err(|e| e.to_string())?
                .with_audio(gop.sound.as_ref().map(AudioTrackInfo::from));
            return Ok((track, start));
        }
        let path = self.clip_file(Some(&first)).await?;
        let scan = self.scan(&path).map_err(|e| e.to_string())?;
        Ok((source::track(&scan).map_err(|e| e.to_string())?, start))
    }

    /// A fragment's track, frames and sound: from memory, else from its clip file.
    pub(super) async fn load(&mut self, id: u64) -> Result<Loaded, String> {
        let rows = self.units.get(&id).ok_or("unknown fragment")?.rows.clone();
        self.restore(&rows).await;
        let unit = self.units.get(&id).ok_or("unknown fragment")?;
        let cached: Option<Vec<Arc<Gop>>> =
            unit.rows.iter().map(|r| self.cache.get(r.id)).collect();
        if let Some(gops) = cached {
            let frames: Vec<OwnedFrame> = gops
                .iter()
                .flat_map(|g| g.frames.iter())
                .map(|f| OwnedFrame {
                    annex_b: f.data.clone(),
                    time_ms: f.captured_at.timestamp_millis().max(0) as u64,
                    keyframe: f.keyframe,
                })
                .collect();
            let audio: Vec<OwnedAudio> = gops
                .iter()
                .flat_map(|g| g.audio.iter())
                .map(|f| OwnedAudio {
                    data: f.data.clone(),
                    time_ms: f.captured_at.timestamp_millis().max(0) as u64,
                })
                .collect();
            let first = frames.first().ok_or("empty fragment")?;
            let sound = gops.first().and_then(|g| g.sound.as_ref());
            let track = TrackInfo::from_keyframe(&first.annex_b)
                .map_err(|e| e.to_string())?
                .with_audio(sound.map(AudioTrackInfo::from));
            return Ok((track, frames, audio));
        }
        let rows = unit.rows.clone();
        let path = self.clip_file(rows.first()).await?;
        let scan = self.scan(&path).map_err(|e| e.to_string())?;
        let track = source::track(&scan).map_err(|e| e.to_string())?;
        let frames = source::read_frames(&path, &scan, &rows).map_err(|e| e.to_string())?;
        let audio = source::read_audio(&path, &scan, &rows).map_err(|e| e.to_string())?;
        Ok((track, frames, audio))
    }

    /// Silence for a fragment whose sound track has no frame (KVS wants a frame of every
    /// track in every fragment): AAC frames of silence over the picture's span.
    async fn silence(&mut self, track: &AudioTrackInfo, frames: &[OwnedFrame]) -> Vec<OwnedAudio> {
        let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
            return Vec::new();
        };
        let key = (track.rate, track.channels);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.silence.entry(key) {
            let format = AudioFormat {
                codec: AudioCodec::Aac,
                rate: track.rate,
                channels: track.channels,
                config: Bytes::from(track.config.clone()),
            };
            match tokio::task::spawn_blocking(move || capture::audio::silent_aac(&format)).await {
                Ok(Ok(frame)) => {
                    slot.insert(frame);
                }
                Ok(Err(e)) => warn!(error = %e, "cannot make silence for a fragment without sound"),
                Err(e) => warn!(error = %e, "cannot make silence for a fragment without sound"),
            }
        }
        let Some(frame) = self.silence.get(&key) else {
            return Vec::new();
        };
        let step = 1024.0 * 1000.0 / f64::from(track.rate.max(1));
        (0..)
            .map(|k| first.time_ms + (f64::from(k) * step) as u64)
            .take_while(|&t| t <= last.time_ms)
            .map(|time_ms| OwnedAudio {
                data: frame.clone(),
                time_ms,
            })
            .collect()
    }

    pub(super) async fn connect(&mut self) {
        self.machine.take_connect();
        let Some(first) = self.machine.next_queued() else {
            return;
        };
        if !self.may_upload() {
            return; // `on_clock` asks again once the clock is set
        }
        match self.open_connection(first).await {
            Ok(open) => {
                info!(stream = %self.cfg.stream_name, "PutMedia connection open");
                self.open = Some(open);
                self.deps.metrics.connected.set(1);
                let actions = self.machine.connected(Instant::now());
                self.apply(actions).await;
            }
            Err(OpenError::Frames(id, why)) => {
                self.drop_unit(id, &why).await;
                self.machine.want_connection(Instant::now());
            }
            Err(e) => {
                let (retry, code) = match &e {
                    OpenError::PutMedia(p) => (p.is_retryable(), p.code()),
                    _ => (true, 0),
                };
                self.deps
                    .metrics
                    .errors
                    .get_or_create(&[("code", code.to_string())])
                    .inc();
                self.endpoint = None; // fetched again on the next attempt
                let delay = self
                    .machine
                    .connect_failed(Instant::now(), retry, fastrand::f64());
                if retry {
                    warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot open PutMedia");
                } else {
                    error!(error = %e, "KVS refused the upload: fix the stream or the credentials; retrying in 10 min");
                }
            }
        }
    }

    pub(super) async fn open_connection(&mut self, first: u64) -> Result<Open, OpenError> {
        let aws = self.deps.aws.clone();
        let name = self.cfg.stream_name.clone();
        if !self.stream_ready {
            let media_type = match self.cfg.audio {
                true => stream::VIDEO_AUDIO,
                false => stream::VIDEO,
            };
            stream::ensure_stream(
                &aws,
                &name,
                media_type,
                self.cfg.retention_hours,
                self.cfg.create_if_missing,
            )
            .await?;
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
        let (track, start) = self
            .track_of(first)
            .await
            .map_err(|e| OpenError::Frames(first, e))?;
        let header = mkv::header(&track, fastrand::u128(..).to_be_bytes(), fastrand::u64(1..));
        let creds = aws.credentials().await?;
        let target = Target {
            endpoint,
            stream_name: name,
            region: aws.region().to_owned(),
        };
        let producer_start =
            chrono::DateTime::from_timestamp_millis(start as i64).unwrap_or_default();
        let signed_at = crate::aws::skewed(SystemTime::now(), self.skew_ms);
        let conn = putmedia::connect(
            &target,
            &creds,
            producer_start,
            Bytes::from(header),
            signed_at,
        )
        .await
        .inspect_err(|e| {
            if let putmedia::PutMediaError::Refused {
                skew_ms: Some(skew),
                ..
            } = e
            {
                tracing::warn!(
                    skew_ms = skew,
                    "the local clock is off from Kinesis Video's; signing with its time"
                );
                self.skew_ms = *skew;
            }
        })?;
        Ok(Open { conn, track })
    }

    /// Sets the stream's image generation and notification configurations, when asked
    /// for. A refusal is logged with what to fix and tried again with the next
    /// connection; video goes up meanwhile.
    async fn apply_image_settings(&self) -> bool {
        let (aws, name) = (&self.deps.aws, &self.cfg.stream_name);
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

    /// The metadata written after a fragment's cluster (KVS attributes a Tags element to
    /// the cluster before it): who wrote it, and the requests for images and a notification.
    fn fragment_tags(&self, rows: &[FragmentRow]) -> Vec<(&'static str, String)> {
        let mut tags = vec![("EDGECAM_WRITER", "edgecam".to_owned())];
        let first = rows.first();
        if let Some(clip) = first.and_then(|r| r.clip_id.as_deref()) {
            tags.push(("EDGECAM_CLIP", clip.to_owned()));
        }
        if self.cfg.images.is_some() {
            tags.push((images::IMAGE_TAG, String::new()));
        }
        let starts_clip = first.is_some_and(|r| r.clip_id.is_some() && r.first_frame == 0);
        if self.cfg.sns_topic_arn.is_some() && starts_clip {
            tags.push((images::NOTIFICATION_TAG, String::new()));
        }
        tags
    }

    /// A fragment whose frames cannot be read any more: recorded as skipped.
    pub(super) async fn drop_unit(&mut self, id: u64, why: &str) {
        self.machine.forget(id);
        if let Some(unit) = self.units.remove(&id) {
            self.skip_rows(&unit.rows, 0, why).await;
        }
    }

    pub(super) async fn write_next(&mut self) {
        let Some(id) = self.machine.poll_write(Instant::now()) else {
            return;
        };
        if !self.units.contains_key(&id) {
            return; // persisted or skipped meanwhile
        }
        let (track, frames, mut audio) = match self.load(id).await {
            Ok(x) => x,
            Err(why) => {
                self.drop_unit(id, &why).await;
                return;
            }
        };
        if let (Some(sound), true) = (&track.audio, audio.is_empty()) {
            audio = self.silence(sound, &frames).await;
            self.deps.metrics.silent.inc();
        }
        let Some(open) = &self.open else {
            return;
        };
        if track != open.track {
            // A new header is needed; the stall check replaces the connection once the
            // fragments already written are acknowledged.
            warn!(
                fragment = id,
                "the camera's stream parameters changed; a new PutMedia connection follows"
            );
            return;
        }
        // Frames recorded before the clock was set go up on the set clock.
        let mkv_frames: Vec<mkv::Frame<'_>> = frames
            .iter()
            .map(|f| mkv::Frame {
                annex_b: &f.annex_b,
                time_ms: self.corrected_ms(f.time_ms),
                keyframe: f.keyframe,
            })
            .collect();
        // The trailing Tags (this fragment's metadata) also ends the cluster now, so the
        // fragment is acknowledged without waiting for the next GOP.
        let blocks: Vec<mkv::AudioBlock<'_>> = audio
            .iter()
            .map(|a| mkv::AudioBlock {
                data: &a.data,
                time_ms: self.corrected_ms(a.time_ms),
            })
            .collect();
        let tags = self
            .units
            .get(&id)
            .map(|u| self.fragment_tags(&u.rows))
            .unwrap_or_default();
        let tags: Vec<(&str, &str)> = tags.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let bytes = match mkv::fragment(&mkv_frames, &blocks, &tags) {
            Ok(b) => b,
            Err(e) => {
                let why = e.to_string();
                self.drop_unit(id, &why).await;
                return;
            }
        };
        if !open.conn.write(Bytes::from(bytes)).await {
            self.close();
            let actions = self.machine.disconnected(Why::Lost);
            self.apply(actions).await;
        }
    }
}
