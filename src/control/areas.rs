//! Zones and masks changed while the camera runs (drawn on the viewer page): checked
//! against the same rules as the config file, kept in the data directory's areas file
//! (read at start over the config file) and applied to the running parts, with no
//! restart: privacy masks to the capture pipeline from its next frame, zones and motion
//! masks to the recorder from its next picture. One task owns them; `AreasHandle`
//! reaches it.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

use crate::commands::CommandError;
use crate::config::Config;
use crate::events::{Areas, Polygon, TriggerKind};
use crate::recorder::{RecorderCommand, RecorderHandle};

const REQUESTS: usize = 4;

/// Why new areas were not taken.
#[derive(Debug, thiserror::Error)]
pub enum AreasError {
    /// They break the config's rules; nothing changed.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// They could not be kept; nothing changed.
    #[error("cannot keep the areas in {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Kept, but the recorder did not take them (it is stopping).
    #[error("{0}")]
    Recorder(#[from] CommandError),
    #[error("the daemon is stopping")]
    Stopping,
}

/// What the task needs.
pub struct AreasDeps {
    /// The config in force (the config file with the areas file over it).
    pub config: Config,
    /// Whether the pipeline file has the privacy point masks need.
    pub privacy_point: bool,
    pub recorder: RecorderHandle,
    /// Read by the capture pipeline's privacy probe.
    pub privacy: watch::Sender<Arc<Vec<Polygon>>>,
}

type Request = (Areas, oneshot::Sender<Result<Areas, AreasError>>);

/// Reaches the task that owns the areas; cheap to clone.
#[derive(Debug, Clone)]
pub struct AreasHandle {
    requests: mpsc::Sender<Request>,
    current: watch::Receiver<Areas>,
}

impl AreasHandle {
    /// The areas in force.
    pub fn current(&self) -> Areas {
        self.current.borrow().clone()
    }

    /// Puts `areas` in force (all of them, or none when they are wrong) and keeps them.
    pub async fn set(&self, areas: Areas) -> Result<Areas, AreasError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((areas, tx))
            .await
            .map_err(|_| AreasError::Stopping)?;
        rx.await.map_err(|_| AreasError::Stopping)?
    }
}

/// Starts the task; it ends when every handle is gone.
pub fn spawn(deps: AreasDeps) -> AreasHandle {
    let (requests, rx) = mpsc::channel(REQUESTS);
    let (current_tx, current) = watch::channel(crate::config::areas_of(&deps.config));
    tokio::spawn(run(deps, rx, current_tx));
    AreasHandle { requests, current }
}

async fn run(
    mut deps: AreasDeps,
    mut requests: mpsc::Receiver<Request>,
    current: watch::Sender<Areas>,
) {
    while let Some((areas, reply)) = requests.recv().await {
        let result = change(&mut deps, areas).await;
        if let Ok(a) = &result {
            current.send_replace(a.clone());
        }
        let _ = reply.send(result);
    }
}

/// The problems `areas` would give the config in force, in the config file's words.
pub fn problems(config: &Config, areas: &Areas, privacy_point: bool) -> Vec<String> {
    let mut out = crate::config::areas_problems(config, areas);
    if !areas.privacy_masks.is_empty() && !privacy_point {
        out.push("camera.privacy_masks: this camera's pipeline file has no privacy point (an identity named \"privacy\" before its tee), so nothing can be masked".into());
    }
    out
}

async fn change(deps: &mut AreasDeps, areas: Areas) -> Result<Areas, AreasError> {
    let wrong = problems(&deps.config, &areas, deps.privacy_point);
    if !wrong.is_empty() {
        return Err(AreasError::Invalid(wrong));
    }
    let data_dir = deps.config.storage.data_dir.clone();
    let keep = areas.clone();
    let written = tokio::task::spawn_blocking(move || crate::config::write_areas(&data_dir, &keep))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    if let Err(source) = written {
        let path = crate::config::areas_path(&deps.config.storage.data_dir);
        return Err(AreasError::Write { path, source });
    }
    crate::config::set_areas(&mut deps.config, &areas);
    deps.privacy
        .send_replace(Arc::new(areas.privacy_masks.clone()));
    let command = RecorderCommand::Areas(areas.clone());
    deps.recorder.execute(TriggerKind::Http, command).await?;
    info!(
        zones = areas.zones.len(),
        privacy_masks = areas.privacy_masks.len(),
        motion_masks = areas.motion_masks.len(),
        "zones and masks changed"
    );
    Ok(areas)
}
