//! Scenario tests of the event tracker on simulated time, asserting the action lists.

use super::*;
use chrono::TimeZone;

struct Seq(u32);
impl IdSource for Seq {
    fn next_id(&mut self, _now: Time) -> String {
        self.0 += 1;
        format!("id{}", self.0)
    }
}

fn t(secs: f64) -> Time {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
        + chrono::Duration::milliseconds((secs * 1000.0) as i64)
}

fn tracker() -> Tracker<Seq> {
    Tracker::new(TrackerSettings::default(), Seq(0))
}

fn motion(score: f32) -> Input {
    Input::Trigger(Trigger {
        kind: TriggerKind::Motion,
        label: "motion".into(),
        score,
        duration: None,
        since: None,
        zones: Vec::new(),
    })
}

/// A compact view of actions: kind, id and time (seconds from the epoch of `t`).
fn brief(actions: &[Action]) -> Vec<String> {
    let secs = |x: &Time| (*x - t(0.0)).num_milliseconds() as f64 / 1000.0;
    actions
        .iter()
        .map(|a| match a {
            Action::EventStarted(e) => format!("started {} at {}", e.id, secs(&e.started_at)),
            Action::EventUpdated(e) => format!("updated {} score {}", e.id, e.score),
            Action::EventEnded(e) => format!(
                "ended {} at {} clips {:?}",
                e.id,
                secs(&e.ended_at.unwrap()),
                e.clip_ids
            ),
            Action::StartClip {
                event_id,
                clip_id,
                from,
            } => format!("clip {clip_id} of {event_id} from {}", secs(from)),
            Action::EndClip { clip_id, until } => format!("end {clip_id} at {}", secs(until)),
        })
        .collect()
}

/// Ticks at every `poll_timeout` up to `until`, collecting actions.
fn run_until(tr: &mut Tracker<Seq>, until: f64) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(next) = tr.poll_timeout() {
        if next > t(until) {
            break;
        }
        out.extend(brief(&tr.handle(next, Input::Tick)));
    }
    out
}

#[test]
fn one_trigger_makes_one_event_with_pre_and_post_roll() {
    let mut tr = tracker();
    assert_eq!(
        brief(&tr.handle(t(100.0), motion(3.0))),
        ["started id1 at 100", "clip id2 of id1 from 95"]
    );
    assert!(tr.recording());
    assert_eq!(tr.poll_timeout(), Some(t(110.0)));
    assert_eq!(tr.handle(t(109.9), Input::Tick), []);
    assert_eq!(
        run_until(&mut tr, 200.0),
        ["end id2 at 110", "ended id1 at 100 clips [\"id2\"]"]
    );
    assert!(tr.current().is_none());
    assert_eq!(tr.poll_timeout(), None);
}

#[test]
fn further_triggers_extend_and_update_at_most_every_interval() {
    let mut tr = tracker();
    tr.handle(t(0.0), motion(1.0));
    assert_eq!(tr.handle(t(1.0), motion(4.0)), []);
    assert_eq!(tr.handle(t(2.0), motion(2.0)), []);
    assert_eq!(
        tr.poll_timeout(),
        Some(t(5.0)),
        "the update is due one interval after the start"
    );
    assert_eq!(
        brief(&tr.handle(t(5.0), Input::Tick)),
        ["updated id1 score 4"]
    );
    tr.handle(t(8.0), motion(1.0));
    assert_eq!(
        run_until(&mut tr, 100.0),
        [
            "updated id1 score 4",
            "end id2 at 18",
            "ended id1 at 8 clips [\"id2\"]"
        ]
    );
}

#[test]
fn trigger_within_min_gap_continues_the_event_without_overlap() {
    let mut tr = tracker();
    tr.handle(t(0.0), motion(1.0));
    assert_eq!(run_until(&mut tr, 12.0), ["end id2 at 10"]);
    // Lingering until 15: the same event, a new clip starting where the last ended.
    // The update is due at once: the last one (the start) is over an interval ago.
    assert_eq!(
        brief(&tr.handle(t(12.0), motion(1.0))),
        ["clip id3 of id1 from 10", "updated id1 score 1"]
    );
    assert_eq!(
        run_until(&mut tr, 100.0),
        ["end id3 at 22", "ended id1 at 12 clips [\"id2\", \"id3\"]"]
    );
}

#[test]
fn trigger_after_min_gap_is_a_new_event() {
    let mut tr = tracker();
    tr.handle(t(0.0), motion(1.0));
    run_until(&mut tr, 15.0);
    assert!(tr.current().is_none());
    assert_eq!(
        brief(&tr.handle(t(16.0), motion(1.0))),
        ["started id3 at 16", "clip id4 of id3 from 11"]
    );
}

#[test]
fn long_events_are_cut_into_clips_of_max_length() {
    let settings = TrackerSettings {
        max_clip: Duration::from_secs(60),
        update_interval: Duration::from_secs(1000),
        ..TrackerSettings::default()
    };
    let mut tr = Tracker::new(settings, Seq(0));
    let mut actions = brief(&tr.handle(t(0.0), motion(1.0)));
    let mut now = 0.0;
    while now < 150.0 {
        now += 5.0;
        actions.extend(run_until(&mut tr, now));
        actions.extend(brief(&tr.handle(t(now), motion(1.0))));
    }
    actions.extend(run_until(&mut tr, 1000.0));
    assert_eq!(
        actions,
        [
            "started id1 at 0",
            "clip id2 of id1 from -5",
            "end id2 at 55",
            "clip id3 of id1 from 55",
            "end id3 at 115",
            "clip id4 of id1 from 115",
            "end id4 at 160",
            "ended id1 at 150 clips [\"id2\", \"id3\", \"id4\"]",
        ]
    );
}

#[test]
fn timed_recording_lasts_its_duration_plus_post_roll() {
    let mut tr = tracker();
    let record = Input::Trigger(Trigger {
        kind: TriggerKind::Http,
        label: "doorbell".into(),
        score: 0.0,
        duration: Some(Duration::from_secs(30)),
        since: None,
        zones: Vec::new(),
    });
    assert_eq!(
        brief(&tr.handle(t(0.0), record)),
        ["started id1 at 0", "clip id2 of id1 from -5"]
    );
    tr.handle(t(3.0), motion(2.0)); // motion inside the recording does not shorten it
    assert_eq!(
        run_until(&mut tr, 100.0),
        [
            "updated id1 score 2",
            "end id2 at 40",
            "ended id1 at 30 clips [\"id2\"]"
        ]
    );
}

#[test]
fn stop_ends_the_event_at_once() {
    let mut tr = tracker();
    tr.handle(t(0.0), motion(1.0));
    assert_eq!(
        brief(&tr.handle(t(3.0), Input::Stop)),
        ["end id2 at 3", "ended id1 at 3 clips [\"id2\"]"]
    );
    assert_eq!(
        tr.handle(t(4.0), Input::Stop),
        [],
        "stop with nothing open does nothing"
    );
}

#[test]
fn late_tick_still_ends_clip_at_its_deadline() {
    let mut tr = tracker();
    tr.handle(t(0.0), motion(1.0));
    // The task was busy: one tick long after every deadline.
    assert_eq!(
        brief(&tr.handle(t(60.0), Input::Tick)),
        ["end id2 at 10", "ended id1 at 0 clips [\"id2\"]"]
    );
}

#[test]
fn a_clock_step_mid_event_keeps_its_length_and_moves_its_times() {
    let mut tr = tracker();
    tr.handle(t(100.0), motion(3.0));
    // 4 s in, NTP sets the clock an hour later: the clock now reads 3704.
    let hour = chrono::Duration::hours(1);
    let updated = tr.handle(t(3704.0), Input::ClockStepped(hour));
    assert_eq!(brief(&updated), ["updated id1 score 3"]);
    let Action::EventUpdated(e) = &updated[0] else {
        unreachable!()
    };
    assert_eq!(e.started_at, t(3700.0), "the start, on the new clock");
    // The event still ends 10 s after its trigger (not at once, which a deadline on
    // the old clock would mean), with its clip from the pre-roll on the new clock.
    assert_eq!(tr.poll_timeout(), Some(t(3710.0)));
    assert_eq!(tr.handle(t(3709.0), Input::Tick), []);
    assert_eq!(
        run_until(&mut tr, 4000.0),
        ["end id2 at 3710", "ended id1 at 3700 clips [\"id2\"]"]
    );
    // With nothing open, a step does nothing.
    assert_eq!(tr.handle(t(5000.0), Input::ClockStepped(hour)), []);
}

#[test]
fn an_object_event_starts_its_clip_before_the_motion_that_led_to_it() {
    let mut tr = tracker();
    // Motion began at 10 s; the person was confirmed at 13 s.
    let person = Input::Trigger(Trigger {
        kind: TriggerKind::Object,
        label: "person".into(),
        score: 0.8,
        duration: None,
        since: Some(t(10.0)),
        zones: vec!["porch".into()],
    });
    let actions = tr.handle(t(13.0), person);
    assert_eq!(
        brief(&actions),
        ["started id1 at 13", "clip id2 of id1 from 5"],
        "pre-roll (5 s) before the first motion"
    );
    let Action::EventStarted(e) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(e.labels.get("person"), Some(&0.8));
    assert!(e.zones.contains("porch"));
    assert_eq!(TriggerKind::parse("object"), Some(TriggerKind::Object));
}
