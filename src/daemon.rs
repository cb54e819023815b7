//! The supervisor behind `edgecam run`: starts the parts, reports readiness to systemd,
//! and shuts down in order on SIGTERM/SIGINT (a second signal exits at once).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::capture::{self, CaptureError, CaptureState, Heartbeat, Outputs, TaskConfig};
use crate::config::Config;
use crate::index::{Index, IndexError, INDEX_FILE};
use crate::live;
use crate::media::{AnalysisBus, FrameBus};
use crate::metrics::Metrics;
use crate::mqtt;
use crate::recorder::{self, recovery, retention, RecorderConfig, RecorderDeps};
use crate::web::{self, WebState};

/// How long parts get to finish after the shutdown signal before edgecam exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("cannot create the data directory {}: {source} (check storage.data_dir and its permissions)", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source} (is another edgecam running? change web.listen)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the index in the data directory: {0}")]
    Index(#[from] IndexError),
    #[error("live view: {0}")]
    Live(#[from] live::LiveError),
    #[error(transparent)]
    Mqtt(#[from] crate::tls::TlsError),
    #[error("upload: {0}")]
    Upload(#[source] crate::kvs::KvsError),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

impl DaemonError {
    /// True when the configuration (or pipeline file) must be fixed: exit code 78.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Capture(e) if !e.is_retryable())
            || matches!(self, Self::Mqtt(_))
            || matches!(self, Self::Live(live::LiveError::Aws(_)))
            || matches!(self, Self::Upload(_))
    }
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let data_dir = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| DaemonError::DataDir {
        path: data_dir.clone(),
        source,
    })?;

    let spec = capture::template::load(&config.camera)?;
    capture::check(&spec)?;
    let mqtt_settings = mqtt::settings(&config)?;
    let mqtt_wake = Arc::new(tokio::sync::Notify::new());
    let upload_stream = config
        .upload
        .enabled
        .then(|| config.upload.stream(&config.aws.thing_name).to_owned());
    let events_out = mqtt_settings.as_ref().map(|s| {
        mqtt::EventPublisher::new(
            s.topics.clone(),
            s.client_id.clone(),
            s.outbox_max,
            Arc::clone(&mqtt_wake),
        )
        .with_stream(upload_stream.clone())
    });

    let frames = FrameBus::new("frames");
    let analysis = AnalysisBus::new("analysis");
    let metrics = Arc::new(Metrics::new(frames.clone()));
    let heartbeat = Heartbeat::new(Instant::now());
    let outputs = Outputs::new(frames, analysis, metrics.capture.clone(), heartbeat.clone());

    let listener = TcpListener::bind(&config.web.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.web.listen.clone(),
            source,
        })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    let index = Index::open(&data_dir.join(INDEX_FILE)).await?;
    if let Err(e) = recovery::recover(&index, &data_dir).await {
        error!(error = %e, "recovery of torn clips failed; continuing");
    }

    // One token per part so shutdown can stop them in order.
    let (web_stop, recorder_stop, capture_stop, retention_stop) = (
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let task_cfg = TaskConfig {
        fps: config.camera.fps,
        stall_timeout: Duration::from_secs(config.camera.stall_timeout_s),
    };
    let recorder_cfg = RecorderConfig {
        tracker: config.events.tracker(),
        motion: config.motion.settings(),
        detect: config.motion.enabled,
        pre_roll_max_bytes: config.storage.pre_roll_max_mb as usize * 1024 * 1024,
    };
    let upload_aws = if config.upload.enabled {
        Some(
            crate::kvs::Aws::from_config(&config.aws)
                .await
                .map_err(DaemonError::Upload)?,
        )
    } else {
        None
    };
    let (upload_feed, feed_rx) = crate::upload::UploadFeed::channel();
    let recorder_deps = RecorderDeps {
        frames: outputs.frames.clone(),
        analysis: outputs.analysis.clone(),
        snapshot: outputs.snapshot.subscribe(),
        index: index.clone(),
        data_dir: data_dir.clone(),
        events: events_out,
        upload: (upload_aws.is_some() && !config.upload.continuous()).then_some(upload_feed),
    };
    // Events a crash cut short still owe their `end` message.
    if let Some(out) = &recorder_deps.events {
        for id in index.events_owing_an_end().await.unwrap_or_default() {
            out.queue_end(&index, &id).await;
        }
    }
    // The recorder subscribes before capture starts, so it sees the first keyframe.
    let (recorder, recorder_task) =
        recorder::spawn(recorder_cfg, recorder_deps, recorder_stop.clone()).await;
    let recorder = recorder.with_playback(upload_aws.as_ref().map(|aws| {
        crate::upload::Playback::new(
            aws.clone(),
            upload_stream.clone().unwrap_or_default(),
            index.clone(),
        )
    }));
    let (capture, capture_task) = capture::spawn(
        spec.clone(),
        task_cfg,
        outputs.clone(),
        capture_stop.clone(),
    );
    let limits = retention::Limits {
        max_bytes: config.storage.max_bytes,
        max_age: (config.storage.max_age_days > 0)
            .then(|| Duration::from_secs(u64::from(config.storage.max_age_days) * 86_400)),
        min_free_percent: config.storage.min_free_percent,
    };
    let live_stop = CancellationToken::new();
    let live_deps = live::LiveDeps {
        frames: outputs.frames.clone(),
        capture: capture.clone(),
        recorder: recorder.clone(),
        metrics: metrics.live.clone(),
    };
    let live_parts = live::start(&config, live_deps, &live_stop).await?;
    let retention_task = retention::spawn(
        index.clone(),
        data_dir.clone(),
        limits,
        retention::INTERVAL,
        retention_stop.clone(),
    );
    let upload_stop = CancellationToken::new();
    let upload_task = upload_aws.map(|aws| {
        let cfg = crate::upload::UploadConfig {
            stream_name: config.upload.stream(&config.aws.thing_name).to_owned(),
            retention_hours: config.upload.retention_hours,
            create_if_missing: config.upload.create_if_missing,
            continuous: config.upload.continuous(),
        };
        let deps = crate::upload::UploadDeps {
            aws,
            index: index.clone(),
            data_dir: data_dir.clone(),
            frames: outputs.frames.clone(),
            metrics: metrics.upload.clone(),
        };
        crate::upload::spawn(cfg, deps, feed_rx, upload_stop.clone())
    });
    let mqtt_stop = CancellationToken::new();
    let mqtt_task = mqtt_settings.map(|settings| {
        let deps = mqtt::MqttDeps {
            index: index.clone(),
            recorder: recorder.clone(),
            snapshot: outputs.snapshot.subscribe(),
            viewers: live_parts.viewers.clone(),
            metrics: metrics.mqtt.clone(),
            wake: Arc::clone(&mqtt_wake),
        };
        mqtt::spawn(settings, deps, mqtt_stop.clone())
    });
    let heartbeat_for_watchdog = heartbeat.clone();
    let web_state = WebState {
        metrics,
        heartbeat,
        snapshot: outputs.snapshot.subscribe(),
        recorder,
        index: index.clone(),
        data_dir: data_dir.clone(),
        lan: live_parts.lan,
        viewers: live_parts.viewers,
        max_viewers: config.live.max_viewers,
    };
    let web_cancel = web_stop.clone();
    let web_task = tokio::spawn(async move {
        if let Err(e) = web::serve(listener, web_state, web_cancel).await {
            error!(error = %e, "local HTTP server failed");
        }
    });
    info!(
        pipeline = %spec.path.display(),
        listen = %config.web.listen,
        data_dir = %data_dir.display(),
        "edgecam started"
    );
    tokio::spawn(notify_ready_when_playing(capture.state()));
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(ping_watchdog(
            heartbeat_for_watchdog,
            period,
            Duration::from_secs(config.camera.stall_timeout_s),
        ));
    }

    tokio::select! {
        _ = sigterm.recv() => info!(signal = "SIGTERM", "shutting down"),
        _ = sigint.recv() => info!(signal = "SIGINT", "shutting down"),
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // A second signal means "now": skip the orderly part.
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
        warn!("second signal: exiting immediately");
        std::process::exit(130);
    });

    // Order: stop taking commands, finish open clips, stop capture, flush the index.
    let orderly = async {
        web_stop.cancel();
        let _ = web_task.await;
        recorder_stop.cancel();
        let _ = recorder_task.await;
        // Unsent fragments stay pending in the index for the next start.
        upload_stop.cancel();
        if let Some(t) = upload_task {
            let _ = t.await;
        }
        // After the recorder: the end messages of the clips it just finished are queued.
        mqtt_stop.cancel();
        if let Some(t) = mqtt_task {
            let _ = t.await;
        }
        live_stop.cancel();
        for t in live_parts.tasks {
            let _ = t.await;
        }
        capture_stop.cancel();
        let _ = capture_task.await;
        retention_stop.cancel();
        let _ = retention_task.await;
        index.close().await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, orderly).await.is_err() {
        warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "parts did not stop in time; exiting anyway"
        );
    }
    info!("edgecam stopped");
    Ok(())
}

/// Whether the watchdog may be told all is well: frames arrived within `limit`.
fn frames_flowing(age: Option<Duration>, limit: Duration) -> bool {
    age.is_some_and(|a| a < limit)
}

/// Pings systemd's watchdog (`WatchdogSec=`) twice per period, but only while frames flow:
/// a camera wedged beyond what pipeline rebuilds fix gets the whole service restarted.
async fn ping_watchdog(heartbeat: Heartbeat, period: Duration, stall: Duration) {
    // The first check comes half a period in, not before the first frame could arrive.
    let half = period / 2;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    let mut warned = false;
    loop {
        tick.tick().await;
        if frames_flowing(heartbeat.age(Instant::now()), stall) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            warned = false;
        } else if !warned {
            warn!(
                stall_s = stall.as_secs(),
                "no frames: not pinging the systemd watchdog"
            );
            warned = true;
        }
    }
}

/// Tells systemd READY=1 the first time the pipeline reaches PLAYING.
async fn notify_ready_when_playing(mut state: tokio::sync::watch::Receiver<CaptureState>) {
    let playing = state
        .wait_for(|s| matches!(s, CaptureState::Playing { .. }))
        .await;
    if playing.is_ok() {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            warn!(error = %e, "could not notify systemd of readiness");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_only_while_frames_flow() {
        let limit = Duration::from_secs(10);
        assert!(!frames_flowing(None, limit), "no frame yet");
        assert!(frames_flowing(Some(Duration::from_millis(70)), limit));
        assert!(!frames_flowing(Some(Duration::from_secs(11)), limit));
    }
}
