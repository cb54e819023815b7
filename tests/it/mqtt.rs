//! MQTT against a real mosquitto with mutual TLS: event messages in order with every
//! field, commands and their results, Home Assistant discovery, a broker outage and a
//! `kill -9` losing nothing, and a client without a certificate refused.

use crate::support;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::daemon::Daemon;
use crate::support::mosquitto::{client_leaf, try_connect, Broker, Observer};
use crate::support::pki::Pki;
use serde_json::Value;

pub(crate) const THING: &str = "cam1";
pub(crate) const EVENTS: &str = "edgecam/cam1/events";

pub(crate) struct Setup {
    _dir: tempfile::TempDir,
    pub pki: Pki,
    pub broker: Broker,
    pub observer: Observer,
}

/// A broker with mutual TLS and an observer subscribed to the camera's topics.
pub(crate) async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = Broker::start(dir.path(), &pki);
    let observer = Observer::start(&broker, &pki, &["edgecam/cam1/#", "homeassistant/#"]).await;
    Setup {
        _dir: dir,
        pki,
        broker,
        observer,
    }
}

/// A daemon on the broker; quick events (1 s pre-roll, 1 s post-roll, no merging).
fn daemon(s: &Setup, extra: &str) -> Daemon {
    let client = client_leaf(&s.pki, THING);
    let mqtt = s.broker.daemon_config(&s.pki, &client, THING, extra);
    tokio::task::block_in_place(|| {
        Daemon::start_edited(|t| {
            format!(
                "{t}\n{mqtt}\n[motion]\nenabled = false\n[events]\npre_roll_s = 1\npost_roll_s = 1\n\
                 min_gap_s = 0\nupdate_interval_s = 1\n"
            )
        })
    })
}

fn record(d: &Daemon, seconds: f64, label: &str) {
    let (status, reply) = d.command(&format!(
        r#"{{"command":"record","duration_s":{seconds},"label":"{label}"}}"#
    ));
    assert_eq!(status, 200, "{reply}");
}

/// The ids of the events whose `t` message (`start`, `end`) arrived.
pub(crate) fn event_ids(msgs: &[support::mosquitto::Seen], t: &str) -> BTreeSet<String> {
    of_type(msgs, t)
        .iter()
        .filter_map(|v| v["event_id"].as_str().map(str::to_owned))
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn of_type(msgs: &[support::mosquitto::Seen], t: &str) -> Vec<Value> {
    msgs.iter()
        .map(|m| m.json())
        .filter(|v| v["type"] == t)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_goes_out_start_to_end_with_every_field() {
    let s = setup().await;
    let d = daemon(&s, "home_assistant = true");
    let online = s
        .observer
        .wait("edgecam/cam1/availability", Duration::from_secs(10), |m| {
            m.iter().any(|x| x.text() == "online")
        })
        .await;
    assert!(!online.is_empty(), "availability online");

    record(&d, 1.0, "doorbell");
    let msgs = s
        .observer
        .wait(EVENTS, Duration::from_secs(15), |m| {
            !of_type(m, "end").is_empty()
        })
        .await;
    let start = of_type(&msgs, "start").remove(0);
    let end = of_type(&msgs, "end").remove(0);
    // The schema: a field that disappears breaks home automations, so it breaks this.
    let base: BTreeSet<String> = [
        "v",
        "type",
        "event_id",
        "label",
        "trigger",
        "score",
        "started_at",
        "ended_at",
        "clip_ids",
        "thumbnail",
        "camera",
        "labels",
        "zones",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&start), base);
    let mut end_keys = base.clone();
    end_keys.extend(["clips".to_string(), "duration_s".to_string()]);
    assert_eq!(keys(&end), end_keys);
    assert_eq!(start["v"], 1);
    assert_eq!(start["label"], "doorbell");
    assert_eq!(start["trigger"], "http");
    assert_eq!(start["camera"], THING);
    assert_eq!(start["event_id"], end["event_id"]);
    assert!(start["ended_at"].is_null() && end["ended_at"].is_string());
    // The clip holds pre-roll + 1 s + post-roll: about 3 s.
    let dur = end["duration_s"].as_f64().unwrap();
    assert!((2.0..6.0).contains(&dur), "clip duration {dur}");
    assert_eq!(end["clips"].as_array().unwrap().len(), 1);
    let order: Vec<String> = msgs
        .iter()
        .map(|m| m.json()["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(order.first().map(String::as_str), Some("start"));
    assert_eq!(order.last().map(String::as_str), Some("end"));

    // The retained state, and Home Assistant discovery tied to availability.
    let state = s
        .observer
        .wait("edgecam/cam1/state", Duration::from_secs(5), |m| {
            !m.is_empty()
        })
        .await;
    let last = state.last().unwrap().json();
    assert_eq!(last["camera"], THING);
    assert_eq!(last["motion"], false, "a recording is not motion: {last}");
    assert_eq!(last["upload_backlog"], 0);
    // Home Assistant's camera image: refreshed by the event, no command needed.
    let image = s
        .observer
        .wait("edgecam/cam1/snapshot", Duration::from_secs(5), |m| {
            !m.is_empty()
        })
        .await;
    assert!(
        image
            .first()
            .is_some_and(|m| m.payload.starts_with(&[0xFF, 0xD8])),
        "a JPEG on the snapshot topic"
    );
    let motion = s
        .observer
        .wait(
            "homeassistant/binary_sensor/cam1/motion/config",
            Duration::from_secs(5),
            |m| !m.is_empty(),
        )
        .await;
    assert_eq!(
        motion[0].json()["value_template"],
        "{{ 'ON' if value_json.motion else 'OFF' }}",
        "the motion sensor follows motion, not recording"
    );
    let discovery = s
        .observer
        .wait(
            "homeassistant/switch/cam1/detect/config",
            Duration::from_secs(5),
            |m| !m.is_empty(),
        )
        .await;
    let config = discovery[0].json();
    assert_eq!(config["availability_topic"], "edgecam/cam1/availability");
    // Home Assistant restarting gets the configs again.
    s.observer.publish("homeassistant/status", "online").await;
    s.observer
        .wait(
            "homeassistant/switch/cam1/detect/config",
            Duration::from_secs(5),
            |m| m.len() >= 2,
        )
        .await;
    assert!(
        s.observer
            .on("homeassistant/switch/cam1/detect/config")
            .len()
            >= 2
    );
    let (_, _, metrics) = support::http_get(d.addr, "/metrics").unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(metrics.contains("edgecam_mqtt_connected 1"), "{metrics}");
    assert!(
        metrics.contains("edgecam_mqtt_published_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_and_bad_ones_get_errors() {
    let s = setup().await;
    let _d = daemon(&s, "");
    s.observer
        .wait("edgecam/cam1/availability", Duration::from_secs(10), |m| {
            !m.is_empty()
        })
        .await;
    let o = &s.observer;
    o.publish("edgecam/cam1/cmd/status", r#"{"id":"s1"}"#).await;
    o.publish("edgecam/cam1/cmd/detect", r#"{"id":"d1","enabled":true}"#)
        .await;
    o.publish("edgecam/cam1/cmd/snapshot", r#"{"id":"p1"}"#)
        .await;
    o.publish("edgecam/cam1/cmd/record", r#"{"id":"r1","duration_s":1}"#)
        .await;
    o.publish("edgecam/cam1/cmd/status", "{not json").await;
    o.publish("edgecam/cam1/cmd/status", r#"{"id":"x1","bogus":1}"#)
        .await;
    o.publish("edgecam/cam1/cmd/fly", r#"{"id":"f1"}"#).await;
    o.publish("edgecam/cam1/cmd/status", r#"{"enabled":true}"#)
        .await;
    let big = format!(r#"{{"id":"b1","label":"{}"}}"#, "x".repeat(20_000));
    o.publish("edgecam/cam1/cmd/record", &big).await;

    let result = |name: &str, id: &str| {
        let topic = format!("edgecam/cam1/cmd/{name}/result");
        let id = id.to_owned();
        async move {
            o.wait(&topic, Duration::from_secs(10), |m| {
                m.iter().any(|x| x.json()["id"] == id.as_str())
            })
            .await
            .into_iter()
            .map(|x| x.json())
            .find(|v| v["id"] == id.as_str())
            .unwrap_or(Value::Null)
        }
    };
    let status = result("status", "s1").await;
    assert_eq!(status["ok"], true, "{status}");
    let detect = result("detect", "d1").await;
    assert_eq!(detect["ok"], true, "{detect}");
    let snap = result("snapshot", "p1").await;
    assert_eq!(snap["ok"], true, "{snap}");
    let jpeg = o.on("edgecam/cam1/snapshot");
    assert!(
        jpeg[0].payload.starts_with(&[0xFF, 0xD8]),
        "a JPEG is published"
    );
    assert_eq!(snap["result"]["bytes"], jpeg[0].payload.len());
    let rec = result("record", "r1").await;
    assert_eq!(rec["ok"], true, "{rec}");
    let bogus = result("status", "x1").await;
    assert_eq!(bogus["ok"], false);
    assert!(
        bogus["error"].as_str().unwrap().contains("bogus"),
        "{bogus}"
    );
    let fly = result("fly", "f1").await;
    assert_eq!(fly["ok"], false);
    assert!(
        fly["error"].as_str().unwrap().contains("unknown command"),
        "{fly}"
    );
    // No id (malformed, missing, or too large to read): nothing to answer, only a log.
    let status_results = o.on("edgecam/cam1/cmd/status/result");
    assert_eq!(status_results.len(), 2, "only s1 and x1 are answered");
    assert!(o
        .on("edgecam/cam1/cmd/record/result")
        .iter()
        .all(|m| m.json()["id"] != "b1"));
    // The daemon is still serving, and detect=on shows in the retained state.
    o.publish("edgecam/cam1/cmd/status", r#"{"id":"s2"}"#).await;
    assert_eq!(result("status", "s2").await["result"]["detect"], true);
    let state = o
        .wait("edgecam/cam1/state", Duration::from_secs(5), |m| {
            m.iter().any(|x| x.json()["detect"] == true)
        })
        .await;
    assert!(state.iter().any(|x| x.json()["detect"] == true));
    // A recording from MQTT says so.
    let starts = o
        .wait(EVENTS, Duration::from_secs(10), |m| {
            !of_type(m, "start").is_empty()
        })
        .await;
    assert_eq!(of_type(&starts, "start")[0]["trigger"], "mqtt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_events_during_a_broker_outage_all_arrive_in_order() {
    let mut s = setup().await;
    let d = daemon(&s, "");
    s.observer
        .wait("edgecam/cam1/availability", Duration::from_secs(10), |m| {
            !m.is_empty()
        })
        .await;
    s.broker.stop();
    for i in 0..5 {
        record(&d, 0.5, &format!("outage-{i}"));
        // Each ends (post-roll 1 s) before the next begins.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let depth = |d: &Daemon| {
        let (_, _, m) = support::http_get(d.addr, "/metrics").unwrap();
        String::from_utf8(m)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("edgecam_mqtt_outbox_depth "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    // The last event ends a second after its trigger; the depth is read once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while depth(&d) < 10.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        depth(&d) >= 10.0,
        "5 starts and 5 ends wait in the outbox: {}",
        depth(&d)
    );
    s.broker.resume();
    let msgs = s
        .observer
        .wait(EVENTS, Duration::from_secs(45), |m| {
            of_type(m, "end").len() >= 5
        })
        .await;
    let starts = of_type(&msgs, "start");
    let ends = of_type(&msgs, "end");
    let labels: Vec<&str> = starts
        .iter()
        .map(|v| v["label"].as_str().unwrap())
        .collect();
    let mut unique = labels.clone();
    unique.dedup();
    assert_eq!(
        unique,
        ["outage-0", "outage-1", "outage-2", "outage-3", "outage-4"],
        "all five, in order"
    );
    // Duplicates only as QoS 1 redelivery: the same event id again, never a new one.
    let ids: BTreeSet<&str> = starts
        .iter()
        .map(|v| v["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5);
    let end_ids: BTreeSet<&str> = ends
        .iter()
        .map(|v| v["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, end_ids);
    // Each event's start comes before its end.
    for id in &ids {
        let pos = |t: &str| {
            msgs.iter()
                .position(|m| m.json()["event_id"] == *id && m.json()["type"] == t)
                .unwrap()
        };
        assert!(pos("start") < pos("end"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_offline_and_the_outbox_survives() {
    let mut s = setup().await;
    let mut d = daemon(&s, "");
    let avail = "edgecam/cam1/availability";
    s.observer
        .wait(avail, Duration::from_secs(10), |m| {
            m.iter().any(|x| x.text() == "online")
        })
        .await;
    d.signal("-KILL");
    let seen = s
        .observer
        .wait(avail, Duration::from_secs(10), |m| {
            m.last().is_some_and(|x| x.text() == "offline")
        })
        .await;
    assert_eq!(seen.last().unwrap().text(), "offline", "the Last Will");

    tokio::task::block_in_place(|| d.restart());
    s.observer
        .wait(avail, Duration::from_secs(10), |m| {
            m.last().is_some_and(|x| x.text() == "online")
        })
        .await;
    assert_eq!(s.observer.on(avail).last().unwrap().text(), "online");

    // Messages written while the broker is away survive a kill -9 of the daemon, and an
    // event the kill cut short still gets its end (its clip recovered) after the restart.
    s.broker.stop();
    record(&d, 5.0, "cut-short");
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.signal("-KILL");
    s.broker.resume();
    tokio::task::block_in_place(|| d.restart());
    let msgs = s
        .observer
        .wait(EVENTS, Duration::from_secs(20), |m| {
            !of_type(m, "end").is_empty()
        })
        .await;
    let start = of_type(&msgs, "start").remove(0);
    let end = of_type(&msgs, "end").remove(0);
    assert_eq!(start["label"], "cut-short");
    assert_eq!(end["event_id"], start["event_id"]);
    let clip_s = end["duration_s"].as_f64().unwrap();
    assert!(
        clip_s >= 1.0,
        "the recovered clip is in the end message: {end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let broker = Broker::start(dir.path(), &pki);
    let leaf = client_leaf(&pki, "someone");
    assert!(try_connect(&broker, &pki, Some(&leaf)).await.is_ok());
    let err = try_connect(&broker, &pki, None).await.unwrap_err();
    eprintln!("without a certificate: {err}");
}

#[test]
fn a_key_readable_by_others_stops_the_daemon_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let leaf = pki.leaf(THING, &[THING]);
    std::fs::set_permissions(&leaf.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = format!(
        "{}\n[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\nthing_name = \"{THING}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        support::daemon::daemon_config(dir.path(), support::free_port()),
        pki.ca_pem.display(),
        leaf.cert.display(),
        leaf.key.display()
    );
    let config = support::write_file(dir.path(), "edgecam.toml", &text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
}

/// 150 events at 5 a second (each a 0.1 s recording, no pre- or post-roll), the broker
/// stopped for 3 s in the middle: every event's `start` and `end` reaches a subscriber.
/// (`cargo bench --bench mqtt` adds a burst at 10 a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_at_five_a_second_through_a_broker_restart_lose_no_start_or_end() {
    let mut s = setup().await;
    let client = client_leaf(&s.pki, THING);
    let mqtt = s.broker.daemon_config(&s.pki, &client, THING, "");
    let d = tokio::task::block_in_place(|| {
        Daemon::start_edited(|t| {
            format!(
                "{t}\n{mqtt}\n[motion]\nenabled = false\n[events]\npre_roll_s = 0\n\
                 post_roll_s = 0\nmin_gap_s = 0\n"
            )
        })
    });
    s.observer
        .wait("edgecam/cam1/availability", Duration::from_secs(10), |m| {
            !m.is_empty()
        })
        .await;
    let mut sent = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    for i in 0..150 {
        tick.tick().await;
        if i == 60 {
            s.broker.stop();
        }
        if i == 75 {
            s.broker.resume();
        }
        let (status, reply) =
            tokio::task::block_in_place(|| d.command(r#"{"command":"record","duration_s":0.1}"#));
        assert_eq!(status, 200, "{reply}");
        if let Some(id) = reply["result"]["event_id"].as_str() {
            sent.insert(id.to_owned());
        }
    }
    let ids = event_ids;
    let msgs = s
        .observer
        .wait(EVENTS, Duration::from_secs(60), |m| {
            ids(m, "end").len() >= sent.len()
        })
        .await;
    let (starts, ends) = (ids(&msgs, "start"), ids(&msgs, "end"));
    eprintln!(
        "{} events made, {} starts and {} ends arrived",
        sent.len(),
        starts.len(),
        ends.len()
    );
    assert!(sent.len() >= 125, "events were made: {}", sent.len());
    assert_eq!(starts, sent, "every start arrived");
    assert_eq!(ends, sent, "every end arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_motion_sensor_is_on_while_the_ball_moves_and_off_when_detection_stops() {
    let s = setup().await;
    let client = client_leaf(&s.pki, THING);
    let mqtt = s.broker.daemon_config(&s.pki, &client, THING, "");
    // The 320×240 test pattern's ball is motion to the detector.
    let d = tokio::task::block_in_place(|| {
        Daemon::start_edited(|t| format!("{t}\n{mqtt}\n[motion]\nenabled = true\n"))
    });
    let on = s
        .observer
        .wait("edgecam/cam1/state", Duration::from_secs(20), |m| {
            m.iter().any(|x| x.json()["motion"] == true)
        })
        .await;
    assert!(
        on.iter().any(|x| x.json()["motion"] == true),
        "motion shows while the ball moves"
    );
    let (status, _) = d.command(r#"{"command":"detect","enabled":false}"#);
    assert_eq!(status, 200);
    let off = s
        .observer
        .wait("edgecam/cam1/state", Duration::from_secs(10), |m| {
            m.last().is_some_and(|x| x.json()["motion"] == false)
        })
        .await;
    assert_eq!(off.last().unwrap().json()["motion"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_event_carries_its_label_her_topic_turns_on_and_her_snapshot_follows() {
    let s = setup().await;
    let client = client_leaf(&s.pki, THING);
    let mqtt = s
        .broker
        .daemon_config(&s.pki, &client, THING, "home_assistant = true");
    let model = crate::support::photos::model();
    // The test scene started 34 s into its cycle: the person walks at 6-16 s.
    let _d = tokio::task::block_in_place(|| {
        Daemon::start_env(&[("EDGECAM_SCENE_OFFSET_S", "34")], |t| {
            format!(
                "{t}\n{mqtt}\n[detect]\nenabled = true\nmodel = \"{}\"\nlabels = [\"person\", \"car\"]\nmin_scores = {{ person = 0.2 }}\n\
                 [[zones]]\nname = \"porch\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\nlabels = [\"person\"]\n",
                model.display()
            )
        })
    });
    let discovery = s
        .observer
        .wait(
            "homeassistant/binary_sensor/cam1/person/config",
            Duration::from_secs(20),
            |m| !m.is_empty(),
        )
        .await;
    assert_eq!(discovery[0].json()["state_topic"], "edgecam/cam1/person");
    let starts = s
        .observer
        .wait("edgecam/cam1/events", Duration::from_secs(45), |m| {
            m.iter().any(|x| x.json()["type"] == "start")
        })
        .await;
    let start = starts.iter().find(|x| x.json()["type"] == "start").unwrap();
    let event = start.json();
    assert_eq!(
        (&event["trigger"], &event["label"]),
        (&Value::from("object"), &Value::from("person")),
        "{event}"
    );
    assert!(
        event["labels"]["person"].as_f64().unwrap() >= 0.2,
        "{event}"
    );
    // Her own topic goes ON, the state counts her, and the event's snapshot follows.
    let on = s
        .observer
        .wait("edgecam/cam1/person", Duration::from_secs(10), |m| {
            m.iter().any(|x| x.text() == "ON")
        })
        .await;
    assert!(on.iter().any(|x| x.text() == "ON"), "never ON");
    let porch = s
        .observer
        .wait("edgecam/cam1/zone/porch", Duration::from_secs(5), |m| {
            m.iter().any(|x| x.text() == "ON")
        })
        .await;
    assert!(porch.iter().any(|x| x.text() == "ON"), "her zone never ON");
    assert!(!s
        .observer
        .on("homeassistant/binary_sensor/cam1/zone_porch/config")
        .is_empty());
    let snapshot = s
        .observer
        .wait("edgecam/cam1/snapshot", Duration::from_secs(5), |m| {
            m.iter().any(|x| x.at >= start.at)
        })
        .await;
    let jpeg = snapshot.iter().find(|x| x.at >= start.at).unwrap();
    assert_eq!(&jpeg.payload[..2], &[0xFF, 0xD8], "a JPEG");
    let boxed = crate::support::photos::box_pixels(&jpeg.payload);
    assert!(
        boxed >= 200,
        "her box is drawn on it ({boxed} green pixels)"
    );
    eprintln!(
        "snapshot {:?} after the start message",
        jpeg.at.duration_since(start.at)
    );
    let counted = s
        .observer
        .wait("edgecam/cam1/state", Duration::from_secs(10), |m| {
            m.iter()
                .any(|x| x.json()["objects"]["person"].as_u64() >= Some(1))
        })
        .await;
    let seen = counted
        .iter()
        .find(|x| x.json()["objects"]["person"].as_u64() >= Some(1))
        .map(|x| x.json());
    assert_eq!(
        seen.as_ref().map(|s| &s["zones"]["porch"]),
        Some(&Value::from(1)),
        "{seen:?}"
    );
    // When she has gone and nothing moves, her topic goes OFF again.
    let off = s
        .observer
        .wait("edgecam/cam1/person", Duration::from_secs(20), |m| {
            m.last().is_some_and(|x| x.text() == "OFF")
        })
        .await;
    assert_eq!(off.last().unwrap().text(), "OFF");
    // Retained: a subscriber that comes later is told at once.
    let late = Observer::start(&s.broker, &s.pki, &["edgecam/cam1/person"]).await;
    let told = late
        .wait("edgecam/cam1/person", Duration::from_secs(5), |m| {
            !m.is_empty()
        })
        .await;
    assert!(told.first().is_some_and(|x| x.retain && x.text() == "OFF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_is_told_the_rtsp_url_and_keeps_the_last_picture() {
    let s = setup().await;
    let port = support::free_port();
    let _d = daemon(
        &s,
        &format!("home_assistant = true\n[rtsp]\nenabled = true\nlisten = \"127.0.0.1:{port}\""),
    );
    let url = s
        .observer
        .wait("edgecam/cam1/rtsp", Duration::from_secs(10), |m| {
            !m.is_empty()
        })
        .await;
    assert_eq!(url[0].text(), format!("rtsp://127.0.0.1:{port}/live"));
    let sensor = s
        .observer
        .wait(
            "homeassistant/sensor/cam1/rtsp/config",
            Duration::from_secs(5),
            |m| !m.is_empty(),
        )
        .await;
    assert_eq!(sensor[0].json()["state_topic"], "edgecam/cam1/rtsp");
    // A picture is kept by the broker: a Home Assistant that starts later shows it.
    s.observer
        .publish("edgecam/cam1/cmd/snapshot", r#"{"id":"ha"}"#)
        .await;
    s.observer
        .wait("edgecam/cam1/snapshot", Duration::from_secs(10), |m| {
            !m.is_empty()
        })
        .await;
    let topics = ["edgecam/cam1/snapshot", "edgecam/cam1/rtsp"];
    let late = Observer::start_as(&s.broker, &s.pki, "late-observer", &topics).await;
    let kept = late
        .wait("edgecam/cam1/snapshot", Duration::from_secs(10), |m| {
            !m.is_empty()
        })
        .await;
    assert!(kept[0].retain && kept[0].payload.starts_with(&[0xFF, 0xD8]));
    let kept = late
        .wait("edgecam/cam1/rtsp", Duration::from_secs(10), |m| {
            !m.is_empty()
        })
        .await;
    assert!(kept[0].retain, "the RTSP URL is kept too");
}
