//! Scenario tests of the uploader's decisions on made-up times: what it says to do for
//! each thing that happens, in order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::TimeZone;

use std::sync::Arc;

use super::*;
use crate::media::EncodedFrame;
use crate::recorder::Feed;
use crate::upload::ack::{Ack, AckEvent};

const T0_MS: i64 = 1_800_000_000_000;

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(T0_MS + ms).unwrap()
}

fn row(id: i64, clip: Option<&str>, first_frame: u64, start_ms: i64) -> FragmentRow {
    FragmentRow {
        id,
        clip_id: clip.map(str::to_owned),
        first_frame,
        frames: 15,
        start_at: at(start_ms),
        end_at: at(start_ms + 933),
    }
}

fn set() -> ClockState {
    ClockState {
        synced: true,
        ..ClockState::default()
    }
}

fn machine(settings: Settings, clock: ClockState, t0: Instant) -> Machine {
    Machine::new(settings, clock, t0, 7)
}

/// Everything the machine says at `now`, without the periodic backlog count.
fn drain(m: &mut Machine, now: Instant) -> Vec<Output> {
    std::iter::from_fn(|| m.poll(now))
        .filter(|o| *o != Output::CountBacklog)
        .collect()
}

fn ack(event: AckEvent, start_ms: i64, number: &str, error: Option<u32>) -> Input {
    Input::Ack(Ack {
        event,
        fragment_timecode: Some((T0_MS + start_ms) as u64),
        fragment_number: Some(number.to_owned()),
        error_id: error,
        error_code: None,
    })
}

fn ids(outs: &[Output]) -> Vec<String> {
    outs.iter()
        .map(|o| match o {
            Output::Connect { id, .. } => format!("connect {id}"),
            Output::Write { id, .. } => format!("write {id}"),
            Output::Persisted {
                rows,
                fragment_number,
                ..
            } => format!(
                "persisted {} as {}",
                rows[0].id,
                fragment_number.as_deref().unwrap_or("?")
            ),
            Output::Skipped { rows, code, .. } => format!("skipped {} ({code})", rows[0].id),
            Output::Record { start_at, .. } => format!("record {}", start_at.timestamp_millis()),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Queues `rows` (one fragment each) and opens the connection the machine asks for.
fn connected(m: &mut Machine, rows: &[FragmentRow], now: Instant) -> Vec<Output> {
    for r in rows {
        m.handle(
            now,
            Input::Queue {
                rows: vec![r.clone()],
                live: false,
            },
        );
    }
    let mut seen = drain(m, now);
    m.handle(now, Input::Connected);
    seen.extend(drain(m, now));
    seen
}

#[test]
fn a_fragment_is_connected_for_written_and_recorded_with_its_own_number() {
    let t0 = Instant::now();
    let mut m = machine(Settings::default(), set(), t0);
    let seen = connected(&mut m, &[row(1, Some("c"), 0, 0)], t0);
    assert_eq!(ids(&seen), ["connect 1", "write 1"]);
    m.handle(t0, ack(AckEvent::Received, 0, "n1", None));
    assert_eq!(drain(&mut m, t0), []);
    m.handle(
        t0,
        ack(
            AckEvent::Persisted,
            0,
            "91343852333181432392682062607743920146264442079",
            None,
        ),
    );
    assert_eq!(
        ids(&drain(&mut m, t0)),
        ["persisted 1 as 91343852333181432392682062607743920146264442079"]
    );
    assert_eq!(m.backlog(), 0);
}

#[test]
fn acks_in_any_order_carry_the_number_of_their_own_fragment() {
    let t0 = Instant::now();
    let mut m = machine(Settings::default(), set(), t0);
    let rows = [row(1, Some("c"), 0, 0), row(2, Some("c"), 15, 1_000)];
    let mut seen = connected(&mut m, &rows, t0);
    // At most one write every 200 ms.
    seen.extend(drain(&mut m, t0 + Duration::from_millis(200)));
    assert_eq!(ids(&seen), ["connect 1", "write 1", "write 2"]);
    m.handle(t0, ack(AckEvent::Persisted, 1_000, "n2", None));
    m.handle(t0, ack(AckEvent::Persisted, 0, "n1", None));
    assert_eq!(
        ids(&drain(&mut m, t0)),
        ["persisted 2 as n2", "persisted 1 as n1"]
    );
}

#[test]
fn a_lost_connection_resends_what_is_not_persisted_oldest_first() {
    let t0 = Instant::now();
    let mut m = machine(Settings::default(), set(), t0);
    let rows = [row(1, Some("c"), 0, 0), row(2, Some("c"), 15, 1_000)];
    connected(&mut m, &rows, t0);
    drain(&mut m, t0 + Duration::from_millis(200));
    m.handle(t0, ack(AckEvent::Persisted, 0, "n1", None));
    m.handle(t0, Input::Lost);
    assert_eq!(ids(&drain(&mut m, t0)), ["persisted 1 as n1", "Close"]);
    // After the backoff (at most 200 ms with jitter), fragment 2 heads the new connection.
    let later = t0 + Duration::from_millis(250);
    assert!(m.deadline() <= later);
    assert_eq!(ids(&drain(&mut m, later)), ["connect 2"]);
    m.handle(later, Input::Connected);
    assert_eq!(ids(&drain(&mut m, later)), ["write 2"]);
}

#[test]
fn nothing_goes_up_before_the_clock_is_set_and_its_corrections_come_first() {
    let t0 = Instant::now();
    let mut m = machine(Settings::default(), ClockState::default(), t0);
    m.handle(
        t0,
        Input::Queue {
            rows: vec![row(1, Some("c"), 0, 0)],
            live: false,
        },
    );
    assert_eq!(ids(&drain(&mut m, t0)), ["Notice(WaitingForClock)"]);
    m.handle(
        t0,
        Input::Queue {
            rows: vec![row(2, Some("c"), 15, 1_000)],
            live: false,
        },
    );
    assert_eq!(drain(&mut m, t0), [], "said once, and no connection");
    let correction = Correction {
        since: at(0),
        until: at(2_000),
        delta: chrono::Duration::hours(1),
    };
    let clock = ClockState {
        synced: true,
        corrections: vec![correction],
        ..ClockState::default()
    };
    m.handle(t0, Input::Clock(clock));
    let seen = drain(&mut m, t0);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], Output::CorrectTimes(vec![correction]));
    assert!(matches!(seen[1], Output::Reload { .. }), "{seen:?}");
    assert_eq!(seen[2], Output::Notice(Notice::ClockSet));
    assert_eq!(m.corrected(at(500)), at(500) + chrono::Duration::hours(1));
}

#[test]
fn a_clip_s_gops_are_recorded_at_their_next_keyframe_with_corrected_times() {
    let t0 = Instant::now();
    let correction = Correction {
        since: at(-10_000),
        until: at(10_000),
        delta: chrono::Duration::seconds(30),
    };
    let clock = ClockState {
        synced: true,
        corrections: vec![correction],
        ..ClockState::default()
    };
    let mut m = machine(Settings::default(), clock, t0);
    let clip: Arc<str> = "c".into();
    let frame = |ms: i64, keyframe: bool| EncodedFrame {
        data: Bytes::from_static(b"\0\0\x01\x65"),
        pts: Duration::from_millis(ms as u64),
        captured_at: at(ms),
        keyframe,
        generation: 1,
    };
    m.handle(
        t0,
        Input::Feed(Feed::ClipStart {
            clip_id: Arc::clone(&clip),
            sound: None,
        }),
    );
    for (i, ms) in [0, 500, 1_000].into_iter().enumerate() {
        let feed = Feed::Frame {
            clip_id: Arc::clone(&clip),
            index: i as u64,
            frame: frame(ms, ms % 1_000 == 0),
        };
        m.handle(t0, Input::Feed(feed));
    }
    let seen = drain(&mut m, t0);
    assert_eq!(ids(&seen), [format!("record {}", T0_MS + 30_000)]);
    let Output::Record {
        clip_id,
        gop,
        end_at,
        ..
    } = &seen[0]
    else {
        unreachable!()
    };
    assert_eq!((clip_id.as_deref(), gop.frames.len()), (Some("c"), 2));
    assert_eq!(*end_at, at(500) + chrono::Duration::seconds(30));
    let clip_id = Arc::clone(&clip);
    m.handle(t0, Input::Feed(Feed::ClipEnd { clip_id, frames: 3 }));
    assert_eq!(
        ids(&drain(&mut m, t0)),
        [format!("record {}", T0_MS + 31_000)]
    );
}

#[test]
fn an_older_fragment_waits_for_the_queue_to_drain_then_everything_reloads() {
    let t0 = Instant::now();
    let mut m = machine(Settings::default(), set(), t0);
    connected(&mut m, &[row(5, Some("c"), 15, 5_000)], t0);
    m.handle(
        t0,
        Input::Queue {
            rows: vec![row(1, Some("b"), 0, 1_000)],
            live: false,
        },
    );
    assert_eq!(drain(&mut m, t0), [], "deferred, not refused");
    m.handle(t0, ack(AckEvent::Persisted, 5_000, "n5", None));
    let tick = t0 + TICK;
    assert_eq!(
        ids(&drain(&mut m, tick)),
        ["persisted 5 as n5", "Close", "Reload { cutting: [] }"]
    );
}

#[test]
fn a_refused_fragment_is_skipped_and_a_stream_that_takes_nothing_stops_for_ten_minutes() {
    let t0 = Instant::now();
    let mut m = machine(Settings::default(), set(), t0);
    let rows = [row(1, Some("c"), 0, 0), row(2, Some("c"), 15, 1_000)];
    connected(&mut m, &rows, t0);
    m.handle(t0, ack(AckEvent::Error, 0, "", Some(4006)));
    assert_eq!(ids(&drain(&mut m, t0)), ["skipped 1 (4006)"]);
    drain(&mut m, t0 + Duration::from_millis(200));
    m.handle(t0, ack(AckEvent::Error, 1_000, "", Some(4008)));
    assert_eq!(ids(&drain(&mut m, t0)), ["Close", "Stopped { code: 4008 }"]);
    assert_eq!(m.next_connect(), None, "no attempt while stopped");
    let retry = t0 + link::STOP_RETRY;
    assert_eq!(ids(&drain(&mut m, retry)), ["Reload { cutting: [] }"]);
}

#[test]
fn fragments_ask_for_images_always_and_for_a_notification_at_a_clip_s_start() {
    let t0 = Instant::now();
    let settings = Settings {
        images: true,
        notify: true,
        live_sound: false,
    };
    let mut m = machine(settings, set(), t0);
    let rows = [row(1, Some("c"), 0, 0), row(2, Some("c"), 15, 1_000)];
    let mut seen = connected(&mut m, &rows, t0);
    seen.extend(drain(&mut m, t0 + Duration::from_millis(200)));
    let tags: Vec<Vec<&str>> = seen
        .iter()
        .filter_map(|o| match o {
            Output::Write { tags, .. } => Some(tags.iter().map(|(n, _)| *n).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(
        tags,
        [
            vec![
                "EDGECAM_WRITER",
                "EDGECAM_CLIP",
                images::IMAGE_TAG,
                images::NOTIFICATION_TAG
            ],
            vec!["EDGECAM_WRITER", "EDGECAM_CLIP", images::IMAGE_TAG],
        ]
    );
}

#[test]
fn fragments_whose_frames_are_gone_are_skipped_and_the_next_one_connects() {
    let t0 = Instant::now();
    let mut m = machine(Settings::default(), set(), t0);
    for r in [row(1, Some("c"), 0, 0), row(2, Some("c"), 15, 1_000)] {
        m.handle(
            t0,
            Input::Queue {
                rows: vec![r],
                live: false,
            },
        );
    }
    assert_eq!(ids(&drain(&mut m, t0)), ["connect 1"]);
    m.handle(
        t0,
        Input::Unreadable {
            id: 1,
            why: "clip deleted".into(),
        },
    );
    assert_eq!(ids(&drain(&mut m, t0)), ["skipped 1 (0)", "connect 2"]);
}
