//! The viewer page in headless Chromium plays live video from the daemon over LAN
//! signaling, and lists recorded events.

use std::time::{Duration, Instant};

use crate::support::browser::Browser;
use crate::support::daemon::Daemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_page_plays_live_video() {
    let d = Daemon::start_with("[live]\nice_addresses = [\"127.0.0.1\"]\n");
    let (status, _) = d.command(r#"{"command":"record","duration_s":1,"label":"for the list"}"#);
    assert_eq!(status, 200);
    let mut browser = Browser::launch().await;
    browser.goto(&format!("http://{}/", d.addr)).await;
    let probe = "(() => { const v = document.getElementById('live'); \
                 return { t: v.currentTime, w: v.videoWidth, state: document.getElementById('state').textContent, \
                 ttff: document.getElementById('ttff').textContent, viewers: document.getElementById('viewers').textContent, \
                 events: document.querySelectorAll('#events li').length, error: document.getElementById('error').textContent }; })()";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_t = None;
    let state = loop {
        let s = browser.eval(probe).await;
        let t = s["t"].as_f64().unwrap_or(0.0);
        if s["w"].as_u64().unwrap_or(0) > 0 && t > 0.0 {
            match first_t {
                None => first_t = Some(t),
                Some(t0) if t > t0 + 1.0 => break s,
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "video did not play within 30 s: {s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("viewer page: {state}");
    assert_eq!(state["w"], 320, "the video has the camera's width");
    assert_eq!(state["state"], "connected");
    assert!(state["ttff"].as_str().unwrap().ends_with("ms"));
    // The event list shows up once the clip is indexed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        browser.eval("loadEvents()").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = browser.eval(probe).await;
        if s["events"].as_u64().unwrap_or(0) >= 1 && s["viewers"] == "1/10" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events and viewer count not shown: {s}"
        );
    }
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let _ = std::fs::write(std::env::temp_dir().join("edgecam-viewer-page.png"), png);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_page_has_the_camera_sound_behind_a_button() {
    let d = Daemon::start_with("[live]\nice_addresses = [\"127.0.0.1\"]\n");
    let mut browser = Browser::launch().await;
    browser.goto(&format!("http://{}/", d.addr)).await;
    let probe = "(() => { const v = document.getElementById('live'); \
                 const a = v.srcObject ? v.srcObject.getAudioTracks() : []; \
                 return { audio: a.length, flowing: a.length > 0 && !a[0].muted && a[0].readyState === 'live', \
                 muted: v.muted, button: !document.getElementById('sound').hidden, \
                 label: document.getElementById('sound').textContent }; })()";
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let s = browser.eval(probe).await;
        if s["flowing"] == true && s["button"] == true {
            break s;
        }
        assert!(Instant::now() < deadline, "no sound track within 30 s: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(state["audio"], 1);
    assert_eq!(state["muted"], true, "autoplay starts muted");
    assert_eq!(state["label"], "Sound off");
    browser
        .eval("document.getElementById('sound').click()")
        .await;
    let after = browser.eval(probe).await;
    assert_eq!(after["muted"], false, "{after}");
    assert_eq!(after["label"], "Sound on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_page_shows_motion_and_the_masks() {
    // Motion on (the test pattern's ball moves for its first 10 s), one mask.
    let d = Daemon::start_with(
        "[live]\nice_addresses = [\"127.0.0.1\"]\n\
         [motion]\nmasks = [[0.0, 0.0, 0.25, 0.5]]\n",
    );
    let mut browser = Browser::launch().await;
    browser.goto(&format!("http://{}/", d.addr)).await;
    let probe = "(() => { const m = document.querySelectorAll('#overlay polygon.mask'); \
                 return { motion: document.getElementById('motion').textContent, \
                 outlined: document.getElementById('stage').classList.contains('moving'), \
                 masks: m.length, points: m.length ? m[0].getAttribute('points') : '' }; })()";
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let s = browser.eval(probe).await;
        if s["motion"]
            .as_str()
            .unwrap_or_default()
            .starts_with("moving")
            && s["masks"] == 1
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no motion shown within 20 s: {s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("viewer page: {state}");
    assert_eq!(
        state["outlined"], true,
        "the video is outlined while motion goes on"
    );
    assert_eq!(
        state["points"], "0,0 0.25,0 0.25,0.5 0,0.5",
        "a quarter wide, half high"
    );
    let score: f64 = state["motion"]
        .as_str()
        .unwrap()
        .trim_start_matches("moving ")
        .trim_end_matches(" %")
        .parse()
        .unwrap();
    assert!(score > 0.5, "the score is shown: {state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_page_holds_to_talk_over_https_and_the_camera_plays_it() {
    use crate::support::tone::{self, Speaker};
    let speaker = Speaker::listen();
    let d = Daemon::start_https(None, |text| {
        let text = text.replace("[web]\n", "[web]\ntls = \"self-signed\"\n");
        format!(
            "{text}\n[live]\nice_addresses = [\"127.0.0.1\"]\n[motion]\nenabled = false\n\
             [audio]\nspeaker = true\nspeaker_sink = \"{}\"\n",
            tone::speaker_sink(speaker.port)
        )
    });
    let mut browser = Browser::launch().await;
    browser
        .goto(&format!("https://localhost:{}/", d.addr.port()))
        .await;
    let probe = "(() => ({ secure: window.isSecureContext, state: document.getElementById('state').textContent, \
                 button: !document.getElementById('talk').hidden, \
                 talking: document.getElementById('talk').classList.contains('talking'), \
                 talk: document.getElementById('talkstate').textContent, \
                 error: document.getElementById('error').textContent }))()";
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let s = browser.eval(probe).await;
        if s["button"] == true && s["state"] == "connected" {
            break s;
        }
        assert!(Instant::now() < deadline, "no talk button: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(ready["secure"], true);

    // Hold the button: the fake microphone's beeps come out of the camera's speaker.
    let pressed = Instant::now();
    browser
        .eval("document.getElementById('talk').dispatchEvent(new PointerEvent('pointerdown', {bubbles: true}))")
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let talking = loop {
        let s = browser.eval(probe).await;
        if s["talking"] == true && speaker.first_loud_after(pressed).is_some() {
            break s;
        }
        assert!(Instant::now() < deadline, "no sound from the speaker: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        talking["talk"].as_str().unwrap().starts_with("talking"),
        "{talking}"
    );
    let live = talk_state(&d);
    assert_eq!(live["talk"]["talking"], true, "{live}");

    // Let go: the floor is free again.
    browser
        .eval("document.getElementById('talk').dispatchEvent(new PointerEvent('pointerup', {bubbles: true}))")
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let live = talk_state(&d);
        if live["talk"]["talking"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "the floor stayed taken: {live}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/api/live` of an HTTPS daemon.
fn talk_state(d: &Daemon) -> serde_json::Value {
    let (_, _, live) = d.get("/api/live").unwrap();
    serde_json::from_slice(&live).unwrap()
}

/// The page shows the zones and masks over the picture, and an owner draws a new zone
/// with the mouse, names it and saves it: the daemon has it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_page_draws_a_new_zone_and_the_daemon_keeps_it() {
    let d = Daemon::start_edited(|c| {
        let mask = "[camera]\nprivacy_masks = [[0.75, 0.0, 0.25, 0.25]]\n";
        format!(
            "{}\n[live]\nice_addresses = [\"127.0.0.1\"]\n\
             [[zones]]\nname = \"porch\"\npolygon = [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0]]\n",
            c.replacen("[camera]\n", mask, 1)
        )
    });
    let mut browser = Browser::launch().await;
    browser.goto(&format!("http://{}/", d.addr)).await;
    // Measured once the video has its size (the overlay is the video's box).
    let shown = "(() => ({ zones: document.querySelectorAll('#overlay polygon.zone').length, \
                 privacy: document.querySelectorAll('#overlay polygon.privacy').length, \
                 playing: document.getElementById('live').videoWidth > 0, \
                 tags: [...document.querySelectorAll('.tag.zone')].map((t) => t.textContent) }))()";
    let deadline = Instant::now() + Duration::from_secs(20);
    let state = loop {
        let s = browser.eval(shown).await;
        if s["zones"] == 1 && s["privacy"] == 1 && s["playing"] == true {
            break s;
        }
        assert!(Instant::now() < deadline, "areas not drawn: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(state["tags"], serde_json::json!(["porch"]));
    // Edit: a new zone, three corners clicked on the picture, closed on the first.
    browser
        .eval("document.getElementById('edit').click()")
        .await;
    browser
        .eval("document.getElementById('add-zone').click()")
        .await;
    let r = browser
        .eval(
            "(() => { const r = document.getElementById('overlay').getBoundingClientRect(); \
               return { x: r.left, y: r.top, w: r.width, h: r.height }; })()",
        )
        .await;
    let (x, y, w, h) = (
        r["x"].as_f64().unwrap(),
        r["y"].as_f64().unwrap(),
        r["w"].as_f64().unwrap(),
        r["h"].as_f64().unwrap(),
    );
    for [fx, fy] in [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9], [0.5, 0.5]] {
        for kind in ["mousePressed", "mouseReleased"] {
            let at = serde_json::json!({ "type": kind, "x": x + fx * w, "y": y + fy * h, "button": "left", "clickCount": 1 });
            browser.call("Input.dispatchMouseEvent", at).await;
        }
    }
    let named = "(() => { const n = document.querySelectorAll('#shapes .zone-name'); \
                 const l = document.querySelectorAll('#shapes .zone-labels'); \
                 n[1].value = 'drive'; n[1].dispatchEvent(new Event('input')); \
                 l[1].value = 'person, car'; l[1].dispatchEvent(new Event('input')); \
                 document.getElementById('save').click(); return n.length; })()";
    assert_eq!(browser.eval(named).await, 2, "the new zone is listed");
    let deadline = Instant::now() + Duration::from_secs(10);
    let saved = loop {
        let (_, _, body) = d.get("/api/areas").unwrap();
        let areas: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if areas["zones"].as_array().is_some_and(|z| z.len() == 2) {
            break areas;
        }
        assert!(Instant::now() < deadline, "the zone was not saved: {areas}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drive = &saved["zones"][1];
    assert_eq!(drive["name"], "drive");
    assert_eq!(drive["labels"], serde_json::json!(["person", "car"]));
    let corners = drive["polygon"].as_array().unwrap();
    assert_eq!(corners.len(), 3, "{drive}");
    let near = |c: &serde_json::Value, fx: f64, fy: f64| {
        (c[0].as_f64().unwrap() - fx).abs() < 0.02 && (c[1].as_f64().unwrap() - fy).abs() < 0.02
    };
    assert!(
        near(&corners[0], 0.5, 0.5) && near(&corners[1], 0.9, 0.5) && near(&corners[2], 0.9, 0.9),
        "{drive}"
    );
    assert_eq!(
        saved["privacy_masks"].as_array().map(Vec::len),
        Some(1),
        "the mask stays"
    );
    let after = browser
        .eval("document.getElementById('saved').textContent")
        .await;
    assert_eq!(after, "saved");
}
