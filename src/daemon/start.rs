//! Wiring: builds each part from the config and starts them in order. The order is the
//! reverse of shutdown's: the web server stops taking commands first, then the recorder
//! finishes its clips, then the uploader and MQTT (whose `end` messages the recorder
//! just queued), live view, capture and retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::error;

use super::error::DaemonError;
use super::parts::Parts;
use crate::aws::Aws;
use crate::capture::{
    self, AudioOutputs, CaptureState, Heartbeat, Outputs, PipelineSpec, TaskConfig,
};
use crate::config::Config;
use crate::control::Commands;
use crate::detect;
use crate::index::{Index, Outbox};
use crate::live;
use crate::media::{AnalysisBus, FrameBus, RgbBus};
use crate::metrics::Metrics;
use crate::mqtt::{self, MqttSettings};
use crate::recorder::{self, retention, ClipFeed, RecorderConfig, RecorderDeps};
use crate::speaker;
use crate::upload::{self, CloudPlayback, UploadConfig, UploadDeps};
use crate::web::{self, WebState};

/// What start-up checked and opened before any part runs.
pub struct Opened {
    /// The object detector's model, when `detect.enabled`.
    pub model: Option<Arc<crate::detect::Model>>,
    pub spec: PipelineSpec,
    /// The pipeline file's audio part, when audio is on and the file has one.
    pub audio: Option<PipelineSpec>,
    pub mqtt: Option<MqttSettings>,
    pub listener: TcpListener,
    /// The names the server answers to (`web::origin`).
    pub hosts: web::origin::Hosts,
    /// HTTPS, when `web.tls` is on.
    pub https: Option<web::https::Https>,
    pub index: Index,
    pub data_dir: PathBuf,
    /// Whether the pipeline file has the privacy point masks need.
    pub privacy_point: bool,
}

/// What the supervisor watches once the parts run.
pub struct Started {
    pub parts: Parts,
    pub heartbeat: Heartbeat,
    pub capture: watch::Receiver<CaptureState>,
}

/// Starts every part, in order.
pub async fn start(config: &Config, o: Opened) -> Result<Started, DaemonError> {
    let Opened {
        model,
        spec,
        audio: audio_spec,
        mqtt: mqtt_settings,
        listener,
        hosts,
        https,
        index,
        data_dir,
        privacy_point,
    } = o;
    let mut parts = Parts::default();
    // Rung when an MQTT message is queued, and when the clock is set (messages held
    // until then may go).
    let mqtt_wake = Arc::new(tokio::sync::Notify::new());
    let clock_index = index.clone();
    let clock_wake = vec![Arc::clone(&mqtt_wake)];
    let clock_state = parts.start("clock", |stop| {
        let (rx, task) = super::clock::spawn(clock_index, clock_wake, stop);
        (rx, vec![task])
    });
    let frames = FrameBus::new("frames");
    let metrics = Arc::new(Metrics::new(frames.clone()));
    let heartbeat = Heartbeat::new(Instant::now());
    // Privacy masks: the capture pipeline reads them; the areas task changes them.
    let (privacy_tx, privacy_rx) = watch::channel(Arc::new(config.camera.privacy_masks.clone()));
    let mut outputs = Outputs::new(
        frames,
        AnalysisBus::new("analysis"),
        metrics.capture.clone(),
        heartbeat.clone(),
    )
    .with_privacy_watch(privacy_rx);
    // The detector: the capture's `detect` valve opens while the recorder says
    // something moves; its results go to the recorder.
    let detector = model.map(|model| {
        let (wanted, wanted_rx) = watch::channel(false);
        let (tx, detections) = tokio::sync::mpsc::channel(detect::RESULT_QUEUE);
        let pictures = capture::Pictures {
            bus: RgbBus::new("pictures"),
            wanted: wanted_rx,
            every: Duration::from_secs_f64(1.0 / config.detect.fps.max(0.1)),
        };
        outputs = outputs.clone().with_pictures(pictures.clone());
        let sight = recorder::SightDeps {
            detections,
            wanted,
            metrics: metrics.detect.clone(),
        };
        (model, pictures.bus, tx, sight)
    });
    let sight_deps = match detector {
        Some((model, bus, tx, sight)) => {
            let (scores, m) = (config.detect.scores(), metrics.detect.clone());
            parts.start("detect", |stop| {
                ((), vec![detect::spawn(model, scores, &bus, tx, m, stop)])
            });
            Some(sight)
        }
        None => None,
    };
    let upload_aws = match config.upload.enabled {
        true => Some(
            Aws::from_config(&config.aws)
                .await
                .map_err(DaemonError::Upload)?,
        ),
        false => None,
    };
    let stream = config.upload.stream(&config.aws.thing_name).to_owned();
    let (feed, feed_rx) = ClipFeed::channel();
    let outbox = mqtt_settings.as_ref().map(|s| Outbox {
        max: s.outbox_max,
        queued: Arc::clone(&mqtt_wake),
    });
    let audio = audio_spec
        .as_ref()
        .map(|_| AudioOutputs::new(metrics.audio.clone()));
    // A clip that cannot be written wakes retention at once.
    let disk_full = Arc::new(tokio::sync::Notify::new());
    let recorder_deps = RecorderDeps {
        frames: outputs.frames.clone(),
        analysis: outputs.analysis.clone(),
        snapshot: outputs.snapshot.subscribe(),
        index: index.clone(),
        data_dir: data_dir.clone(),
        outbox: outbox.clone(),
        feed: (upload_aws.is_some() && !config.upload.continuous()).then_some(feed),
        audio: audio.as_ref().map(|a| a.aac.clone()),
        disk_full: Some(Arc::clone(&disk_full)),
        motion: metrics.motion.clone(),
        clock: Some(clock_state.clone()),
        sight: sight_deps,
    };
    // Subscribed now, run last: it sees capture's first keyframe and stops first.
    let (recorder, recorder_task) = recorder::prepare(recorder_cfg(config), recorder_deps).await;
    let playback = upload_aws
        .as_ref()
        .map(|aws| CloudPlayback::new(aws.clone(), stream.clone(), index.clone()));
    let areas = crate::control::areas::spawn(crate::control::areas::AreasDeps {
        config: config.clone(),
        privacy_point,
        recorder: recorder.clone(),
        privacy: privacy_tx,
    });
    let rtsp_settings = crate::rtsp::RtspSettings::from_config(config, audio.is_some());
    let mqtt_settings = mqtt_settings.map(|mut m| {
        m.rtsp_url = rtsp_settings
            .as_ref()
            .map(crate::rtsp::RtspSettings::advertised_url);
        m
    });
    let (rtsp_report, rtsp_report_rx) = watch::channel(crate::commands::RtspReport::default());
    let mut commands = Commands::new(recorder, playback)
        .with_audio(audio.as_ref().map(|a| a.heartbeat.clone()))
        .with_areas(areas);
    if rtsp_settings.is_some() {
        commands = commands.with_rtsp(rtsp_report_rx);
    }

    let (index2, dir2) = (index.clone(), data_dir.clone());
    let limits = retention_limits(config);
    parts.start("retention", |stop| {
        let task = retention::spawn(index2, dir2, limits, retention::INTERVAL, disk_full, stop);
        ((), vec![task])
    });
    let task_cfg = TaskConfig {
        fps: config.camera.fps,
        stall_timeout: Duration::from_secs(config.camera.stall_timeout_s),
    };
    let capture = parts.start("capture", |stop| {
        let (handle, task) = capture::spawn(spec, task_cfg.clone(), outputs.clone(), stop);
        (handle, vec![task])
    });
    if let (Some(spec), Some(out)) = (audio_spec, &audio) {
        parts.start("audio", |stop| {
            let (_state, task) = capture::spawn_audio(spec, task_cfg, out.clone(), stop);
            ((), vec![task])
        });
    }
    let speaker = speaker::SpeakerConfig::from_config(&config.audio).map(|cfg| {
        parts.start("speaker", |stop| {
            let (handle, task) = speaker::spawn(cfg, metrics.talk.clone(), stop);
            (handle, vec![task])
        })
    });
    let live_deps = live::LiveDeps {
        frames: outputs.frames.clone(),
        capture: capture.clone(),
        commands: commands.clone(),
        metrics: metrics.live.clone(),
        audio: audio.as_ref().map(|a| a.opus.clone()),
        speaker: speaker.clone(),
    };
    let (lan, viewers) = parts
        .try_start("live", |stop| async move {
            let p = live::start(config, live_deps, &stop).await?;
            Ok::<_, DaemonError>(((p.lan, p.viewers), p.tasks))
        })
        .await?;
    if let Some(settings) = rtsp_settings {
        let deps = crate::rtsp::RtspDeps {
            frames: outputs.frames.clone(),
            aac: audio.as_ref().map(|a| a.aac.clone()),
            capture: capture.clone(),
            metrics: metrics.rtsp.clone(),
            report: rtsp_report,
        };
        parts
            .try_start("rtsp", |stop| async move {
                let tasks = crate::rtsp::start(settings, deps, stop).await?;
                Ok::<_, DaemonError>(((), tasks))
            })
            .await?;
    }
    if let (Some(settings), Some(outbox)) = (mqtt_settings, outbox) {
        let deps = mqtt::MqttDeps {
            index: index.clone(),
            commands: commands.clone(),
            snapshot: outputs.snapshot.subscribe(),
            viewers: viewers.clone(),
            metrics: metrics.mqtt.clone(),
            outbox,
            clock: Some(clock_state.clone()),
            audio: audio.as_ref().map(|a| a.heartbeat.clone()),
            talk: speaker.as_ref().map(speaker::SpeakerHandle::state),
        };
        parts.start("mqtt", |stop| ((), vec![mqtt::spawn(settings, deps, stop)]));
    }
    if let Some(aws) = upload_aws {
        let cfg = UploadConfig {
            stream_name: stream,
            retention_hours: config.upload.retention_hours,
            create_if_missing: config.upload.create_if_missing,
            continuous: config.upload.continuous(),
            audio: audio.is_some(),
            images: crate::aws::images::ImageSettings::from_config(
                &config.upload,
                &config.aws.region,
            ),
            sns_topic_arn: config.upload.sns_topic_arn.clone(),
            continuous_buffer_bytes: u64::from(config.upload.continuous_buffer_mb) << 20,
        };
        let deps = UploadDeps {
            aws,
            index: index.clone(),
            data_dir: data_dir.clone(),
            frames: outputs.frames.clone(),
            audio: audio.as_ref().map(|a| a.aac.clone()),
            metrics: metrics.upload.clone(),
            clock: Some(clock_state.clone()),
        };
        parts.start("upload", |stop| {
            ((), vec![upload::spawn(cfg, deps, feed_rx, stop)])
        });
    }
    parts.start("recorder", |stop| {
        ((), vec![tokio::spawn(recorder_task.run(stop))])
    });
    let onvif =
        crate::onvif::identity::from_config(config, https.is_some(), audio.is_some()).map(Arc::new);
    if let Some(o) = onvif
        .as_ref()
        .filter(|_| config.onvif.discovery_on(&config.web))
    {
        let web_addr = listen_addr(&listener, config);
        let bind = std::net::SocketAddr::new(web_addr.ip(), config.onvif.discovery_port);
        let id = crate::onvif::identity::discovery_identity(o, web_addr.port());
        parts.start("discovery", |stop| {
            ((), vec![crate::onvif::discovery::spawn(bind, id, stop)])
        });
    }
    let web_state = WebState {
        metrics,
        heartbeat: heartbeat.clone(),
        snapshot: outputs.snapshot.subscribe(),
        commands,
        index,
        data_dir,
        lan,
        viewers,
        max_viewers: config.live.max_viewers,
        auth: Arc::new(web::auth::Auth::new(
            config.web.token.as_deref(),
            config.web.metrics_public,
            https.is_some(),
        )),
        hosts: Arc::new(hosts),
        talk: speaker.as_ref().map(speaker::SpeakerHandle::state),
        onvif,
    };
    let tls = https.map(|h| h.config);
    let limits = web::Limits {
        max_connections: config.web.max_connections,
        header_timeout: web::HEADER_TIMEOUT,
    };
    parts.start("web", |stop| {
        let task = tokio::spawn(async move {
            if let Err(e) = web::serve(listener, web_state, tls, limits, stop).await {
                error!(error = %e, "local HTTP server failed");
            }
        });
        ((), vec![task])
    });
    Ok(Started {
        parts,
        heartbeat,
        capture: capture.state(),
    })
}

fn recorder_cfg(config: &Config) -> RecorderConfig {
    RecorderConfig {
        tracker: config.events.tracker(),
        motion: config.motion.settings(),
        detect: config.motion.enabled,
        pre_roll_max_bytes: config.storage.pre_roll_max_mb as usize * 1024 * 1024,
        sight: config.detect.enabled.then(|| recorder::SightConfig {
            objects: config.detect.objects(),
            zones: config.zones.clone(),
            objects_trigger: config.trigger() == crate::config::EventTrigger::Objects,
            model: config.detect.model.display().to_string(),
        }),
    }
}

fn retention_limits(config: &Config) -> retention::Limits {
    retention::Limits {
        max_bytes: config.storage.max_bytes,
        max_age: (config.storage.max_age_days > 0)
            .then(|| Duration::from_secs(u64::from(config.storage.max_age_days) * 86_400)),
        min_free_percent: config.storage.min_free_percent,
        keep_until_uploaded: config.storage.keep_until_uploaded,
    }
}

/// The address the server listens on (the bound one: port 0 becomes the real port).
pub(super) fn listen_addr(listener: &TcpListener, config: &Config) -> std::net::SocketAddr {
    listener
        .local_addr()
        .ok()
        .or_else(|| config.web.listen_addr())
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8080)))
}
