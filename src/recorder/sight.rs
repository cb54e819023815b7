//! What the recorder sees beyond motion: the detector's objects followed across
//! pictures, the zones that say which matter, and whether the detector should look at
//! all (only while something moves). Objects that matter become triggers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use crate::commands::ObjectsReport;
use crate::detect::Detections;
use crate::events::{zones, Object, ObjectSettings, Objects, Rect, Trigger, TriggerKind, Zone};
use crate::metrics::DetectMetrics;

/// The detector's part of the recorder's configuration.
#[derive(Debug, Clone)]
pub struct SightConfig {
    pub objects: ObjectSettings,
    pub zones: Vec<Zone>,
    /// Objects open events (`events.trigger = "objects"`); motion alone does not.
    pub objects_trigger: bool,
    /// The model file, for the status.
    pub model: String,
}

/// The detector's side of the recorder's dependencies.
#[derive(Debug)]
pub struct SightDeps {
    /// What the detector finds.
    pub detections: mpsc::Receiver<Detections>,
    /// Set while the detector should look (something moves).
    pub wanted: watch::Sender<bool>,
    pub metrics: DetectMetrics,
}

/// Objects known now, and what the detector is told.
#[derive(Debug)]
pub(super) struct Sight {
    objects: Objects,
    zones: Vec<Zone>,
    objects_trigger: bool,
    model: String,
    wanted: watch::Sender<bool>,
    metrics: DetectMetrics,
    /// When the current movement began: an event it leads to starts its clip before it.
    motion_began: Option<DateTime<Utc>>,
    /// The motion detector's box around what changed last, and when.
    motion_box: Option<(DateTime<Utc>, Rect)>,
    /// The announced objects in the last picture analysed (none once nothing moves).
    present: Vec<Object>,
}

impl Sight {
    pub fn new(cfg: SightConfig, wanted: watch::Sender<bool>, metrics: DetectMetrics) -> Self {
        Self {
            objects: Objects::new(cfg.objects),
            zones: cfg.zones,
            objects_trigger: cfg.objects_trigger,
            model: cfg.model,
            wanted,
            metrics,
            motion_began: None,
            motion_box: None,
            present: Vec::new(),
        }
    }

    /// What the status says of the detector.
    pub fn report(&self) -> ObjectsReport {
        let (mut present, mut by_zone) = (BTreeMap::new(), BTreeMap::new());
        for z in &self.zones {
            by_zone.insert(z.name.clone(), 0);
        }
        for o in &self.present {
            *present.entry(o.label.clone()).or_insert(0) += 1;
            for name in zones::matters(&self.zones, o).unwrap_or_default() {
                *by_zone.entry(name).or_insert(0) += 1;
            }
        }
        ObjectsReport {
            enabled: true,
            model: Some(self.model.clone()),
            trigger: if self.objects_trigger {
                "objects"
            } else {
                "motion"
            },
            present,
            zones: by_zone,
        }
    }

    /// New zones, from the next picture on.
    pub fn set_zones(&mut self, zones: Vec<Zone>) {
        self.zones = zones;
    }

    /// The announced objects in the last picture analysed.
    pub fn present(&self) -> &[Object] {
        &self.present
    }

    /// Whether motion alone opens events.
    pub fn motion_opens_events(&self) -> bool {
        !self.objects_trigger
    }

    /// The motion detector's verdict now: moving or not, and the box of what changed in
    /// the last frame that showed motion. The detector looks only while it moves.
    pub fn motion(&mut self, now: DateTime<Utc>, moving: bool, changed: Option<Rect>) {
        if let Some(r) = changed {
            self.motion_box = Some((now, r));
        }
        if moving && self.motion_began.is_none() {
            self.motion_began = Some(now);
        } else if !moving {
            // Nothing is looked at while nothing moves: what was in view is not known.
            self.motion_began = None;
            self.present.clear();
        }
        self.wanted
            .send_if_modified(|w| std::mem::replace(w, moving) != moving);
    }

    /// Takes what the detector found at `now`: a trigger for each object that counts
    /// and stands in a zone that wants it, with where it is.
    pub fn detections(&mut self, now: DateTime<Utc>, found: &Detections) -> Vec<(Trigger, Rect)> {
        // The motion box is worth something only if it is recent.
        let motion = self
            .motion_box
            .filter(|(at, _)| (now - *at).num_milliseconds() <= 1500)
            .map(|(_, r)| r);
        let frame = self.objects.handle(now, &found.objects, motion);
        self.present = frame.present.clone();
        for o in &frame.announced {
            let labels = vec![("label".to_owned(), o.label.clone())];
            self.metrics.objects.get_or_create(&labels).inc();
            tracing::info!(object = o.id, label = %o.label, score = o.score, "object seen");
        }
        frame
            .present
            .iter()
            .filter(|o| o.active)
            .filter_map(|o| {
                let trigger = Trigger {
                    kind: TriggerKind::Object,
                    label: o.label.clone(),
                    score: o.score,
                    duration: None,
                    since: self.motion_began,
                    zones: zones::matters(&self.zones, o)?,
                };
                Some((trigger, o.rect))
            })
            .collect()
    }
}

/// The next detections, or never when there is no detector.
pub(super) async fn next(rx: &mut Option<mpsc::Receiver<Detections>>) -> Option<Detections> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
