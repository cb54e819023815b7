//! Zones and masks drawn while the camera runs (`/api/areas`, what the viewer page
//! saves): checked like the config file, in force at once (a privacy mask blacks out
//! the next snapshot), kept over a restart, and shown on `/api/live`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::privacy::{bars, write_bars_pipeline};
use crate::support::daemon::Daemon;
use crate::support::photos::{self, Rgb};

/// The right half of the picture, kept away from the mask's edge.
const RIGHT: [f32; 4] = [0.56, 0.05, 0.95, 0.95];
const LEFT: [f32; 4] = [0.05, 0.05, 0.44, 0.95];

fn put(d: &Daemon, body: &str) -> (u16, Value) {
    let port = d.addr.port();
    let (status, _, reply) = d
        .request(&format!(
            "PUT /api/areas HTTP/1.0\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
        .unwrap();
    (
        status,
        serde_json::from_slice(&reply).unwrap_or(Value::Null),
    )
}

fn get_json(d: &Daemon, path: &str) -> Value {
    let (status, _, body) = d.get(path).unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn snapshot(d: &Daemon) -> Option<Rgb> {
    let (status, _, jpeg) = d.get("/api/snapshot.jpg").ok()?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snapshot.jpg");
    std::fs::write(&path, jpeg).unwrap();
    (status == 200).then(|| photos::decode(&path))
}

/// Waits until the snapshot's right half is dark (`masked`) or lit.
fn wait_right_half(d: &Daemon, masked: bool) -> Rgb {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = snapshot(d) {
            if (s.brightest(RIGHT) <= 40) == masked {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the right half never turned {}",
            if masked { "black" } else { "bright" }
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn zones_and_masks_drawn_while_running_apply_at_once_and_outlast_a_restart() {
    let pipelines = tempfile::tempdir().unwrap();
    write_bars_pipeline(pipelines.path());
    let dir = pipelines.path().to_owned();
    let mut d = Daemon::start_edited(move |c| {
        format!(
            "{}\n[detect]\nlabels = [\"person\", \"car\"]\n",
            bars(&c, &dir, "")
        )
    });
    d.wait_healthy();
    wait_right_half(&d, false);
    let areas = json!({
        "zones": [{"name": "drive", "polygon": [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]], "labels": ["car"]}],
        "privacy_masks": [[[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]],
        "motion_masks": [[0.0, 0.0, 0.25, 0.25]],
    });
    let (status, now) = put(&d, &areas.to_string());
    assert_eq!(status, 200, "{now}");
    assert_eq!(now["zones"], areas["zones"]);
    assert_eq!(now["privacy_masks"], areas["privacy_masks"]);
    // A rectangle comes back as the polygon it is.
    assert_eq!(
        now["motion_masks"],
        json!([[[0.0, 0.0], [0.25, 0.0], [0.25, 0.25], [0.0, 0.25]]])
    );
    // The next pictures are black behind the new mask, and only there.
    let masked = wait_right_half(&d, true);
    assert!(masked.brightest(LEFT) > 150, "the left half stays lit");
    let live = get_json(&d, "/api/live");
    assert_eq!(live["areas"], now, "the page is told");

    // Wrong areas change nothing and say what is wrong.
    let (status, reply) = put(
        &d,
        r#"{"zones":[{"name":"x","polygon":[[0,0],[1,1]],"labels":["boat"]}]}"#,
    );
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains("at least 3") && error.contains("boat"),
        "{error}"
    );
    let (status, reply) = put(&d, r#"{"zones": 3}"#);
    assert_eq!(status, 400, "{reply}");
    assert_eq!(get_json(&d, "/api/areas"), now, "unchanged");

    // Kept: a restart starts with them.
    d.signal("-TERM");
    d.restart();
    assert_eq!(get_json(&d, "/api/areas"), now);
    wait_right_half(&d, true);

    // Taking the mask away shows the right half again.
    let (status, _) = put(&d, r#"{"zones":[],"privacy_masks":[],"motion_masks":[]}"#);
    assert_eq!(status, 200);
    wait_right_half(&d, false);
}
