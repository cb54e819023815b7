//! MQTT topics and payloads (pure). Every payload is JSON with `"v": 1`; README.md
//! documents them and a test pins their fields.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use serde::{Deserialize, Serialize};

pub use crate::events::EventKind;
pub use crate::index::ClipFacts;

use crate::commands::AudioReport;
use crate::events::EventInfo;
use crate::index::{MessageKind, Queued};
use crate::speaker::TalkState;

/// IoT Core's payload limit.
pub const MAX_PAYLOAD: usize = 128 * 1024;
pub const VERSION: u32 = 1;

/// The topics under one prefix (`edgecam/<thing>` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub prefix: String,
}

impl Topics {
    pub fn availability(&self) -> String {
        format!("{}/availability", self.prefix)
    }
    pub fn events(&self) -> String {
        format!("{}/events", self.prefix)
    }
    pub fn state(&self) -> String {
        format!("{}/state", self.prefix)
    }
    pub fn snapshot(&self) -> String {
        format!("{}/snapshot", self.prefix)
    }
    /// `<prefix>/<label>`: `ON` while such an object is in view (a label's spaces and
    /// slashes as `_`).
    pub fn object(&self, label: &str) -> String {
        format!(
            "{}/{}",
            self.prefix,
            label.replace([' ', '/', '+', '#'], "_")
        )
    }
    /// `<prefix>/zone/<name>`: `ON` while an object that matters there is in the zone.
    pub fn zone(&self, name: &str) -> String {
        format!(
            "{}/zone/{}",
            self.prefix,
            name.replace([' ', '/', '+', '#'], "_")
        )
    }
    pub fn talk(&self) -> String {
        format!("{}/talk", self.prefix)
    }
    /// `<prefix>/rtsp`: the camera's RTSP URL (no credentials), retained.
    pub fn rtsp(&self) -> String {
        format!("{}/rtsp", self.prefix)
    }
    /// The subscription for commands.
    pub fn commands(&self) -> String {
        format!("{}/cmd/+", self.prefix)
    }
    pub fn result(&self, command: &str) -> String {
        format!("{}/cmd/{command}/result", self.prefix)
    }
    /// The command name of a command topic (`<prefix>/cmd/<name>`), if it is one.
    pub fn command_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/cmd/")
            .filter(|n| !n.is_empty() && !n.contains('/'))
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `<prefix>/events`: `{"v":1,"type","event_id","label","trigger","score","started_at",
/// "ended_at","clip_ids","thumbnail","camera","labels","zones"}` (`labels`: the objects'
/// labels with their best scores, `zones` the zones they were in); `end` adds `clips` (id, start, end,
/// duration_s each) and `duration_s` (all clips together), and with upload on `kvs`:
/// `{"stream","start","end"}`, the producer-timestamp range to play back from the cloud.
pub fn event(
    kind: EventKind,
    e: &EventInfo,
    camera: &str,
    clips: &[ClipFacts],
    stream: Option<&str>,
) -> Value {
    let thumbnail = clips
        .iter()
        .find(|c| c.thumbnail)
        .map(|c| c.id.as_str())
        .or(e.clip_ids.first().map(String::as_str))
        .map(|id| format!("/api/clips/{id}.jpg"));
    let mut v = json!({
        "v": VERSION,
        "type": kind.as_str(),
        "event_id": e.id,
        "label": e.label,
        "trigger": e.trigger.as_str(),
        "score": (f64::from(e.score) * 1000.0).round() / 1000.0,
        "started_at": ts(e.started_at),
        "ended_at": e.ended_at.map(ts),
        "clip_ids": e.clip_ids,
        "thumbnail": thumbnail,
        "camera": camera,
        "labels": e
            .labels
            .iter()
            .map(|(l, s)| (l.clone(), json!((f64::from(*s) * 1000.0).round() / 1000.0)))
            .collect::<serde_json::Map<_, _>>(),
        "zones": e.zones,
    });
    if kind == EventKind::End {
        let total_ms: u64 = clips.iter().filter_map(|c| c.duration_ms).sum();
        v["duration_s"] = json!(total_ms as f64 / 1000.0);
        v["clips"] = clips
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "start": ts(c.start_at),
                    "end": c.end_at.map(ts),
                    "duration_s": c.duration_ms.map(|d| d as f64 / 1000.0),
                })
            })
            .collect();
        let start = clips.iter().map(|c| c.start_at).min();
        let end = clips.iter().filter_map(|c| c.end_at).max();
        if let (Some(stream), Some(start), Some(end)) = (stream, start, end) {
            v["kvs"] = json!({ "stream": stream, "start": ts(start), "end": ts(end) });
        }
    }
    v
}

/// What `<prefix>/state` reports (kept in the outbox as JSON of these fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFacts {
    pub recording: bool,
    pub event_id: Option<String>,
    pub detect: bool,
    /// Motion is being detected now (not the same as recording: post-roll is not motion).
    pub motion: bool,
    /// The detector's score and what it needs (percent of the picture moving).
    pub motion_score: f32,
    pub motion_min_area_percent: f32,
    pub viewers: usize,
    pub storage_bytes: u64,
    pub upload_backlog: u64,
    pub audio: AudioReport,
    /// The objects in view by label (`[detect]` on, while something moves).
    #[serde(default)]
    pub objects: std::collections::BTreeMap<String, u32>,
    /// The objects that matter in each zone.
    #[serde(default)]
    pub zones: std::collections::BTreeMap<String, u32>,
}

/// `<prefix>/state` (retained).
pub fn state(s: &StateFacts, camera: &str, at: DateTime<Utc>) -> Value {
    json!({
        "v": VERSION,
        "camera": camera,
        "recording": s.recording,
        "event_id": s.event_id,
        "detect": s.detect,
        "motion": s.motion,
        "motion_score": s.motion_score,
        "motion_min_area_percent": s.motion_min_area_percent,
        "viewers": s.viewers,
        "storage_bytes": s.storage_bytes,
        "upload_backlog": s.upload_backlog,
        "audio": { "enabled": s.audio.enabled, "flowing": s.audio.flowing },
        "objects": s.objects,
        "zones": s.zones,
        "at": ts(at),
    })
}

/// `<prefix>/talk` (retained): who talks through the speaker.
pub fn talk(s: &TalkState, camera: &str, at: DateTime<Utc>) -> Value {
    json!({
        "v": VERSION,
        "camera": camera,
        "talking": s.talking,
        "talker": s.talker,
        "at": ts(at),
    })
}

/// A message ready to hand to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Worded {
    pub topic: String,
    pub body: Value,
    pub retain: bool,
}

/// Words a queued message: its topic, its JSON and whether it is retained. `stream` is
/// the KVS stream event video goes to (upload on). An error says why the facts cannot be
/// read (the row is dropped).
pub fn word(
    q: &Queued,
    t: &Topics,
    camera: &str,
    stream: Option<&str>,
) -> Result<Worded, serde_json::Error> {
    let (topic, body, retain) = match q {
        Queued::Event(kind, e) => {
            let kind = match kind {
                MessageKind::Start => EventKind::Start,
                _ => EventKind::Update,
            };
            (t.events(), event(kind, e, camera, &[], None), false)
        }
        Queued::End(e, clips) => (
            t.events(),
            event(EventKind::End, e, camera, clips, stream),
            false,
        ),
        Queued::State(MessageKind::Talk, facts, at) => {
            let s: TalkState = serde_json::from_str(facts)?;
            (t.talk(), talk(&s, camera, *at), true)
        }
        Queued::State(_, facts, at) => {
            let s: StateFacts = serde_json::from_str(facts)?;
            (t.state(), state(&s, camera, *at), true)
        }
    };
    Ok(Worded {
        topic,
        body,
        retain,
    })
}

/// Home Assistant discovery configs: `(topic, payload)`, all retained, all tied to the
/// availability topic; with the detector on, an occupancy binary sensor and a count
/// sensor for each of its `labels` and each of its `zones`; with RTSP on, a diagnostic
/// sensor showing its URL (`rtsp`) for Home Assistant's generic camera or go2rtc.
pub fn discovery(
    t: &Topics,
    camera: &str,
    labels: &[String],
    zones: &[String],
    rtsp: bool,
) -> Vec<(String, Value)> {
    let device = json!({
        "identifiers": [format!("edgecam_{camera}")],
        "name": camera,
        "manufacturer": "edgecam",
        "model": "edgecam camera",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let node = camera.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let common = |name: &str, key: &str| {
        json!({
            "name": name,
            "unique_id": format!("{node}_{key}"),
            "availability_topic": t.availability(),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        })
    };
    let merge = |mut base: Value, extra: Value| {
        if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
            b.extend(e);
        }
        base
    };
    let mut configs = Vec::new();
    // (what, its own topic, its key in the state's JSON, its name in Home Assistant, key)
    let labelled = labels.iter().map(|l| {
        let key = l.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        (l, t.object(l), "objects", l.clone(), key)
    });
    let zoned = zones.iter().map(|z| {
        let key = z.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        (
            z,
            t.zone(z),
            "zones",
            format!("zone {z}"),
            format!("zone_{key}"),
        )
    });
    for (what, topic, field, mut name, key) in labelled.chain(zoned) {
        if let Some(first) = name.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        configs.push((
            format!("homeassistant/binary_sensor/{node}/{key}/config"),
            merge(
                common(&name, &key),
                json!({
                    "device_class": "occupancy",
                    "state_topic": topic,
                    "payload_on": "ON",
                    "payload_off": "OFF",
                }),
            ),
        ));
        let template = format!("{{{{ value_json.{field}['{what}'] | default(0) }}}}");
        configs.push((
            format!("homeassistant/sensor/{node}/{key}_count/config"),
            merge(
                common(&format!("{name} count"), &format!("{key}_count")),
                json!({ "state_topic": t.state(), "value_template": template }),
            ),
        ));
    }
    configs.extend([
        (
            format!("homeassistant/binary_sensor/{node}/motion/config"),
            merge(
                common("Motion", "motion"),
                json!({
                    "device_class": "motion",
                    "state_topic": t.state(),
                    "value_template": "{{ 'ON' if value_json.motion else 'OFF' }}",
                }),
            ),
        ),
        (
            format!("homeassistant/switch/{node}/detect/config"),
            merge(
                common("Motion detection", "detect"),
                json!({
                    "state_topic": t.state(),
                    "value_template": "{{ 'ON' if value_json.detect else 'OFF' }}",
                    "command_topic": format!("{}/cmd/detect", t.prefix),
                    "payload_on": r#"{"id":"home-assistant","enabled":true}"#,
                    "payload_off": r#"{"id":"home-assistant","enabled":false}"#,
                    "state_on": "ON",
                    "state_off": "OFF",
                }),
            ),
        ),
        (
            format!("homeassistant/camera/{node}/snapshot/config"),
            merge(
                common("Snapshot", "snapshot"),
                json!({ "topic": t.snapshot() }),
            ),
        ),
        (
            format!("homeassistant/button/{node}/record/config"),
            merge(
                common("Record 30 s", "record"),
                json!({
                    "command_topic": format!("{}/cmd/record", t.prefix),
                    "payload_press": r#"{"id":"home-assistant","duration_s":30,"label":"manual"}"#,
                }),
            ),
        ),
    ]);
    if rtsp {
        configs.push((
            format!("homeassistant/sensor/{node}/rtsp/config"),
            merge(
                common("RTSP stream", "rtsp"),
                json!({
                    "state_topic": t.rtsp(),
                    "entity_category": "diagnostic",
                    "icon": "mdi:cctv",
                }),
            ),
        ));
    }
    configs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::TriggerKind;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn info() -> EventInfo {
        EventInfo {
            id: "01JEVENT".into(),
            label: "motion".into(),
            trigger: TriggerKind::Motion,
            score: 0.123_456,
            started_at: at("2026-11-21T10:00:00.250Z"),
            ended_at: None,
            clip_ids: vec!["01JCLIP".into()],
            labels: Default::default(),
            zones: Default::default(),
        }
    }

    #[test]
    fn start_message_has_every_field() {
        let v = event(
            EventKind::Start,
            &info(),
            "front-door",
            &[],
            Some("porch-cam"),
        );
        assert_eq!(
            v,
            json!({
                "v": 1, "type": "start", "event_id": "01JEVENT", "label": "motion",
                "trigger": "motion", "score": 0.123, "started_at": "2026-11-21T10:00:00.250Z",
                "ended_at": null, "clip_ids": ["01JCLIP"],
                "thumbnail": "/api/clips/01JCLIP.jpg", "camera": "front-door",
                "labels": {}, "zones": []
            })
        );
        let mut seen = info();
        seen.labels.insert("person".into(), 0.8416);
        seen.zones.insert("porch".into());
        let v = event(EventKind::Update, &seen, "front-door", &[], None);
        assert_eq!(v["labels"], json!({"person": 0.842}));
        assert_eq!(v["zones"], json!(["porch"]));
    }

    #[test]
    fn end_message_carries_clip_durations() {
        let mut e = info();
        e.ended_at = Some(at("2026-11-21T10:00:20Z"));
        let clips = [ClipFacts {
            id: "01JCLIP".into(),
            start_at: at("2026-11-21T09:59:55Z"),
            end_at: Some(at("2026-11-21T10:00:30Z")),
            duration_ms: Some(35_000),
            thumbnail: true,
        }];
        let v = event(EventKind::End, &e, "front-door", &clips, Some("porch-cam"));
        assert_eq!(v["type"], "end");
        assert_eq!(v["ended_at"], "2026-11-21T10:00:20.000Z");
        assert_eq!(v["duration_s"], 35.0);
        assert_eq!(
            v["clips"],
            json!([{"id": "01JCLIP", "start": "2026-11-21T09:59:55.000Z",
                    "end": "2026-11-21T10:00:30.000Z", "duration_s": 35.0}])
        );
        assert_eq!(
            v["kvs"],
            json!({"stream": "porch-cam", "start": "2026-11-21T09:59:55.000Z",
                   "end": "2026-11-21T10:00:30.000Z"}),
            "where to play the event back from the cloud"
        );
        let local = event(EventKind::End, &e, "front-door", &clips, None);
        assert!(local.get("kvs").is_none(), "no upload, no cloud range");
    }

    #[test]
    fn queued_facts_are_worded_at_send_time() {
        let t = Topics {
            prefix: "edgecam/cam1".into(),
        };
        let at = at("2026-11-21T10:00:01.500Z");
        let facts = StateFacts {
            recording: true,
            viewers: 2,
            ..StateFacts::default()
        };
        let state = Queued::State(
            MessageKind::State,
            serde_json::to_string(&facts).unwrap(),
            at,
        );
        let m = word(&state, &t, "cam1", None).unwrap();
        assert_eq!((m.topic.as_str(), m.retain), ("edgecam/cam1/state", true));
        assert_eq!(
            m.body,
            self::state(&facts, "cam1", at),
            "the same as sent directly"
        );
        let talk = Queued::State(
            MessageKind::Talk,
            r#"{"talking":false,"talker":null}"#.into(),
            at,
        );
        let m = word(&talk, &t, "cam1", None).unwrap();
        assert_eq!(m.topic, "edgecam/cam1/talk");
        assert_eq!(m.body["at"], "2026-11-21T10:00:01.500Z");
        let update = Queued::Event(MessageKind::Update, info());
        let m = word(&update, &t, "cam1", Some("porch")).unwrap();
        assert_eq!((m.topic.as_str(), m.retain), ("edgecam/cam1/events", false));
        assert_eq!(m.body["type"], "update");
        let broken = Queued::State(MessageKind::State, "{\"recording\":".into(), at);
        assert!(word(&broken, &t, "cam1", None).is_err());
    }

    #[test]
    fn command_topics_are_recognised_exactly() {
        let t = Topics {
            prefix: "edgecam/cam1".into(),
        };
        assert_eq!(t.command_of("edgecam/cam1/cmd/record"), Some("record"));
        assert_eq!(t.command_of("edgecam/cam1/cmd/record/result"), None);
        assert_eq!(t.command_of("edgecam/cam1/cmd/"), None);
        assert_eq!(t.command_of("edgecam/cam2/cmd/record"), None);
        assert_eq!(t.commands(), "edgecam/cam1/cmd/+");
        assert_eq!(t.result("status"), "edgecam/cam1/cmd/status/result");
    }

    #[test]
    fn discovery_ties_every_entity_to_availability() {
        let t = Topics {
            prefix: "edgecam/cam-1".into(),
        };
        let configs = discovery(&t, "cam-1", &[], &[], false);
        let topics: Vec<&str> = configs.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            topics,
            [
                "homeassistant/binary_sensor/cam_1/motion/config",
                "homeassistant/switch/cam_1/detect/config",
                "homeassistant/camera/cam_1/snapshot/config",
                "homeassistant/button/cam_1/record/config",
            ]
        );
        for (_, c) in &configs {
            assert_eq!(c["availability_topic"], "edgecam/cam-1/availability");
            assert!(c["unique_id"].as_str().unwrap().starts_with("cam_1_"));
        }
        // The switch's payloads are commands the daemon accepts.
        let on = configs[1].1["payload_on"].as_str().unwrap();
        assert!(crate::commands::parse(on.as_bytes(), Some("detect")).is_ok());
        let press = configs[3].1["payload_press"].as_str().unwrap();
        assert!(crate::commands::parse(press.as_bytes(), Some("record")).is_ok());
        // With the detector on: a binary sensor on each label's own topic and a count.
        let labels = ["person".to_owned(), "traffic light".to_owned()];
        let configs = discovery(&t, "cam-1", &labels, &["front yard".to_owned()], true);
        assert_eq!(configs.len(), 11);
        // With RTSP on, last: a diagnostic sensor showing its URL.
        let (topic, rtsp) = &configs[10];
        assert_eq!(topic, "homeassistant/sensor/cam_1/rtsp/config");
        assert_eq!(rtsp["state_topic"], "edgecam/cam-1/rtsp");
        assert_eq!(rtsp["entity_category"], "diagnostic");
        let (topic, person) = &configs[0];
        assert_eq!(topic, "homeassistant/binary_sensor/cam_1/person/config");
        assert_eq!(person["state_topic"], "edgecam/cam-1/person");
        assert_eq!(person["name"], "Person");
        assert_eq!(configs[2].1["state_topic"], "edgecam/cam-1/traffic_light");
        assert_eq!(
            configs[3].1["value_template"],
            "{{ value_json.objects['traffic light'] | default(0) }}"
        );
        // And on each zone's.
        let (topic, yard) = &configs[4];
        assert_eq!(
            topic,
            "homeassistant/binary_sensor/cam_1/zone_front_yard/config"
        );
        assert_eq!(yard["state_topic"], "edgecam/cam-1/zone/front_yard");
        assert_eq!(yard["name"], "Zone front yard");
        assert_eq!(
            configs[5].1["value_template"],
            "{{ value_json.zones['front yard'] | default(0) }}"
        );
    }
}
