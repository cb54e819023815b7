//! The supervisor behind `edgecam run`: starts the parts, reports readiness to systemd,
//! and shuts down in order on SIGTERM/SIGINT (a second signal exits at once).

mod clock;
mod error;
mod parts;
mod start;
mod systemd;

pub use error::DaemonError;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, info, warn};

use crate::capture;
use crate::config::Config;
use crate::index::{Index, INDEX_FILE};
use crate::mqtt;
use crate::recorder::recovery;
use crate::web;
use start::{Opened, Started};

/// How long parts get to finish after the shutdown signal before edgecam exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let opened = open(&config).await?;
    let (index, pipeline) = (opened.index.clone(), opened.spec.path.clone());
    let mut signals = Signals::install()?;
    let Started {
        mut parts,
        heartbeat,
        capture,
    } = start::start(&config, opened).await?;
    info!(
        parts = %parts.names().join(", "),
        pipeline = %pipeline.display(),
        listen = %config.web.listen,
        data_dir = %config.storage.data_dir.display(),
        "edgecam started"
    );
    let stall = Duration::from_secs(config.camera.stall_timeout_s);
    systemd::supervise(capture, heartbeat, stall);

    let failed = tokio::select! {
        _ = signals.first() => None,
        f = parts.failure() => {
            error!(part = f.part, how = %f.how, "a part of edgecam stopped unexpectedly; shutting down");
            Some(f)
        }
    };
    systemd::stopping();
    // A second signal means "now": skip the orderly part.
    tokio::spawn(async move {
        signals.first().await;
        warn!("second signal: exiting immediately");
        std::process::exit(130);
    });
    let orderly = async {
        parts.stop().await;
        index.close().await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, orderly).await.is_err() {
        warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "parts did not stop in time; exiting anyway"
        );
    }
    info!("edgecam stopped");
    match failed {
        Some(f) => Err(DaemonError::PartFailed {
            part: f.part,
            how: f.how,
        }),
        None => Ok(()),
    }
}

/// Loads the detection model off the async workers (parsing and optimising it takes a
/// moment on a small CPU).
pub async fn load_model(
    path: std::path::PathBuf,
) -> Result<std::sync::Arc<crate::detect::Model>, DaemonError> {
    let started = std::time::Instant::now();
    let model = tokio::task::spawn_blocking(move || crate::detect::Model::load(&path))
        .await
        .map_err(|e| crate::detect::DetectError::Inference(e.to_string()))??;
    info!(input = ?model.input(), took_ms = started.elapsed().as_millis() as u64, "detection model loaded");
    Ok(std::sync::Arc::new(model))
}

/// Checks what can be checked before anything runs (pipeline file, MQTT files, the
/// listening address), then opens the index and recovers torn clips.
async fn open(config: &Config) -> Result<Opened, DaemonError> {
    let data_dir = config.storage.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| DaemonError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let model = match config.detect.enabled {
        true => Some(load_model(config.detect.model.clone()).await?),
        false => None,
    };
    let picture = capture::template::DetectPicture {
        input: model.as_ref().map_or([320, 320], |m| {
            let [w, h] = m.input();
            [w as u32, h as u32]
        }),
        fps: config.detect.fps,
    };
    let spec = capture::template::load_with(&config.camera, &picture)?;
    capture::check(&spec)?;
    // Masks can also be drawn later, on the viewer page, where this is checked again.
    let privacy_point = match capture::check_privacy(&spec) {
        Ok(()) => true,
        Err(e) if !config.camera.privacy_masks.is_empty() => return Err(e.into()),
        Err(_) => false,
    };
    let audio = capture::template::load_audio(&config.camera, &config.audio)?;
    match &audio {
        Some(audio) => capture::audio::check(audio)?,
        None if config.audio.enabled => {
            info!(pipeline = %spec.path.display(), "the pipeline file has no audio part (@audio): no sound")
        }
        None => {}
    }
    if let Some(speaker) = crate::speaker::SpeakerConfig::from_config(&config.audio) {
        speaker.playback.check()?;
    }
    let mqtt = mqtt::settings(config)?;
    let listener = TcpListener::bind(&config.web.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.web.listen.clone(),
            source,
        })?;
    let hosts = web::origin::Hosts::new(start::listen_addr(&listener, config), &config.web.hosts);
    let https = web::https::set_up(&config.web, &data_dir, &hosts.certificate_names())?;
    if let Some(h) = &https {
        info!(
            fingerprint = %h.fingerprint,
            certificate = %h.cert_path.display(),
            "HTTPS on: check that the browser shows this SHA-256 fingerprint"
        );
    }
    let index = Index::open(&data_dir.join(INDEX_FILE)).await?;
    if let Err(e) = recovery::recover(&index, &data_dir).await {
        error!(error = %e, "recovery of torn clips failed; continuing");
    }
    Ok(Opened {
        model,
        spec,
        audio,
        mqtt,
        listener,
        hosts,
        https,
        index,
        data_dir,
        privacy_point,
    })
}

/// SIGTERM and SIGINT.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> Result<Self, DaemonError> {
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(DaemonError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?,
        })
    }

    /// The next of either.
    async fn first(&mut self) {
        tokio::select! {
            _ = self.term.recv() => info!(signal = "SIGTERM", "shutting down"),
            _ = self.int.recv() => info!(signal = "SIGINT", "shutting down"),
        }
    }
}
