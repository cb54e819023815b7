//! The index on a temporary database: the migrated schema is what the code expects, and
//! rows round-trip.

use super::*;
use crate::events::TriggerKind;

async fn temp_index() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join(INDEX_FILE)).await.unwrap();
    (dir, index)
}

/// `(table, [columns])` of the migrated database.
async fn schema(index: &Index) -> Vec<(String, Vec<String>)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
         AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(index.pool())
    .await
    .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let cols: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
        )))
        .fetch_all(index.pool())
        .await
        .unwrap();
        out.push((t, cols));
    }
    out
}

#[tokio::test]
async fn migrations_give_the_expected_schema() {
    let (_dir, index) = temp_index().await;
    let expected: Vec<(String, Vec<String>)> = vec![
        (
            "clips".into(),
            [
                "id",
                "event_id",
                "path",
                "status",
                "start_at",
                "end_at",
                "duration_ms",
                "frame_count",
                "bytes",
                "width",
                "height",
                "thumbnail",
                "frames_lost",
                "upload_state",
                "created_at",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "events".into(),
            [
                "id",
                "label",
                "trigger",
                "score",
                "started_at",
                "ended_at",
                "status",
                "start_queued",
                "end_queued",
                "labels",
                "zones",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "fragments".into(),
            [
                "id",
                "clip_id",
                "first_frame",
                "frames",
                "start_at",
                "end_at",
                "state",
                "error_code",
                "fragment_number",
                "persisted_at",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "outbox".into(),
            [
                "seq", "kind", "event_id", "label", "score", "clip_ids", "facts", "at",
            ]
            .map(String::from)
            .to_vec(),
        ),
        (
            "settings".into(),
            ["key", "value"].map(String::from).to_vec(),
        ),
    ];
    assert_eq!(schema(&index).await, expected);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(index.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn reopening_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE);
    Index::open(&path).await.unwrap().close().await;
    let again = Index::open(&path).await.unwrap();
    assert_eq!(schema(&again).await.len(), 5);
    again.set_setting("detect", "off").await.unwrap();
    again.set_setting("detect", "on").await.unwrap();
    assert_eq!(
        again.setting("detect").await.unwrap().as_deref(),
        Some("on")
    );
    assert_eq!(again.setting("nope").await.unwrap(), None);
}

fn event(id: &str, at: DateTime<Utc>) -> EventInfo {
    EventInfo {
        id: id.into(),
        label: "front door".into(),
        trigger: TriggerKind::Http,
        score: 0.0,
        started_at: at,
        ended_at: None,
        clip_ids: vec![],
        labels: Default::default(),
        zones: Default::default(),
    }
}

#[tokio::test]
async fn event_and_clip_round_trip() {
    let (_dir, index) = temp_index().await;
    let t0 = time(1_800_000_000_000);
    let mut e = event("e1", t0);
    index.upsert_event(&e).await.unwrap();
    index
        .insert_clip("c1", "e1", "clips/c1.mp4.part", t0, t0)
        .await
        .unwrap();
    let row = index.clip("c1").await.unwrap();
    assert_eq!(
        (row.status, row.label.as_str(), row.trigger.as_str()),
        (ClipStatus::Recording, "front door", "http")
    );

    let stats = ClipStats {
        start_at: t0,
        end_at: t0 + chrono::Duration::seconds(20),
        duration: Duration::from_secs(20),
        frame_count: 300,
        bytes: 1234,
        width: 320,
        height: 240,
        frames_lost: 0,
    };
    index
        .finish_clip(
            "c1",
            "clips/c1.mp4",
            ClipStatus::Complete,
            &stats,
            Some("clips/c1.jpg"),
        )
        .await
        .unwrap();
    e.ended_at = Some(t0 + chrono::Duration::seconds(10));
    index.upsert_event(&e).await.unwrap();
    let row = index.clip("c1").await.unwrap();
    assert_eq!(row.status, ClipStatus::Complete);
    assert_eq!(
        (row.frame_count, row.bytes, row.duration_ms),
        (Some(300), Some(1234), Some(20_000))
    );
    assert_eq!(row.thumbnail.as_deref(), Some("clips/c1.jpg"));
    assert_eq!(index.clips(None, None, 10).await.unwrap().len(), 1);
    // By label: the event's own, or an object seen in it.
    e.labels.insert("person".into(), 0.5);
    index.upsert_event(&e).await.unwrap();
    for (label, n) in [("person", 1), ("car", 0), ("front door", 1)] {
        let found = index.clips(None, Some(label), 10).await.unwrap();
        assert_eq!(found.len(), n, "{label}");
    }
    let row = index.clip("c1").await.unwrap();
    assert_eq!(row.labels.get("person"), Some(&0.5));
    assert_eq!(
        index
            .clips(Some(t0 + chrono::Duration::seconds(1)), None, 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert!(matches!(
        index.clip("nope").await,
        Err(IndexError::NoSuchClip(_))
    ));
    assert!(matches!(
        index
            .finish_clip("nope", "x", ClipStatus::Complete, &stats, None)
            .await,
        Err(IndexError::NoSuchClip(_))
    ));
}

#[tokio::test]
async fn open_events_are_closed_at_their_last_clip() {
    let (_dir, index) = temp_index().await;
    let t0 = time(1_800_000_000_000);
    index.upsert_event(&event("e1", t0)).await.unwrap();
    index
        .insert_clip("c1", "e1", "c1.mp4.part", t0, t0)
        .await
        .unwrap();
    let stats = ClipStats {
        start_at: t0,
        end_at: t0 + chrono::Duration::seconds(7),
        duration: Duration::from_secs(7),
        frame_count: 1,
        bytes: 1,
        width: 2,
        height: 2,
        frames_lost: 0,
    };
    index
        .finish_clip("c1", "c1.mp4", ClipStatus::Recovered, &stats, None)
        .await
        .unwrap();
    assert_eq!(index.close_open_events().await.unwrap(), 1);
    let ended: i64 = sqlx::query_scalar("SELECT ended_at FROM events WHERE id = 'e1'")
        .fetch_one(index.pool())
        .await
        .unwrap();
    assert_eq!(ended, ms(t0) + 7000);
}

fn outbox(max: u64) -> Outbox {
    Outbox {
        max,
        queued: std::sync::Arc::new(tokio::sync::Notify::new()),
    }
}

/// Queues message `n` of `kind`: an event message about event `e<n>` (recorded first),
/// or a state whose facts are `n`.
async fn queue(index: &Index, kind: MessageKind, n: u32, max: u64) {
    let o = outbox(max);
    let t0 = time(1_800_000_000_000);
    match kind {
        MessageKind::State | MessageKind::Talk => {
            let facts = format!("{{\"n\":{n}}}");
            index.queue_state(kind, &facts, t0, &o).await.unwrap();
        }
        MessageKind::End => {
            let mut e = event(&format!("e{n}"), t0);
            e.ended_at = Some(t0);
            index.upsert_event(&e).await.unwrap();
            assert!(index.queue_end_once(&e.id, &o).await.unwrap());
        }
        _ => {
            let e = event(&format!("e{n}"), t0);
            index
                .upsert_event_and_queue(&e, kind, Some(&o))
                .await
                .unwrap();
        }
    }
}

/// What the outbox holds, as `kind-n`.
async fn outbox_names(index: &Index) -> Vec<String> {
    index
        .outbox_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| match r.message.unwrap() {
            Queued::Event(k, e) => format!("{}-{}", k.as_str(), &e.id[1..]),
            Queued::End(e, _) => format!("end-{}", &e.id[1..]),
            Queued::State(k, facts, _) => format!("{}-{}", k.as_str(), &facts[5..facts.len() - 1]),
        })
        .collect()
}

#[tokio::test]
async fn a_full_outbox_drops_old_updates_never_starts_or_ends() {
    let (_dir, index) = temp_index().await;
    let max = 4;
    queue(&index, MessageKind::Start, 1, max).await;
    queue(&index, MessageKind::Update, 2, max).await;
    queue(&index, MessageKind::Update, 3, max).await;
    queue(&index, MessageKind::End, 4, max).await;
    queue(&index, MessageKind::Start, 5, max).await;
    assert_eq!(
        outbox_names(&index).await,
        ["start-1", "update-3", "end-4", "start-5"],
        "the oldest update went first"
    );
    queue(&index, MessageKind::Start, 6, max).await;
    queue(&index, MessageKind::End, 7, max).await;
    assert_eq!(
        outbox_names(&index).await,
        ["start-1", "end-4", "start-5", "start-6", "end-7"],
        "starts and ends are kept even over the bound"
    );
    // Only the newest state (and talk) is worth sending; one does not replace the other.
    queue(&index, MessageKind::State, 8, 100).await;
    queue(&index, MessageKind::Talk, 9, 100).await;
    queue(&index, MessageKind::State, 10, 100).await;
    let all = outbox_names(&index).await;
    assert_eq!(all[all.len() - 2..], ["talk-9", "state-10"]);
    // Acknowledged messages go; the order of the rest is kept.
    let first = index.outbox_after(0, 1).await.unwrap().remove(0);
    index.outbox_delete(first.seq).await.unwrap();
    assert_eq!(outbox_names(&index).await[0], "end-4");
    assert_eq!(index.outbox_depth().await.unwrap(), 6);
}

#[tokio::test]
async fn a_queued_message_keeps_the_facts_of_its_moment() {
    let (_dir, index) = temp_index().await;
    let o = outbox(100);
    let t0 = time(1_800_000_000_000);
    let mut e = event("ev1", t0);
    e.label = String::new();
    e.score = 1.5;
    e.clip_ids = vec!["c1".into()];
    index
        .upsert_event_and_queue(&e, MessageKind::Start, Some(&o))
        .await
        .unwrap();
    e.label = "person".into();
    e.score = 4.25;
    e.clip_ids.push("c2".into());
    index
        .upsert_event_and_queue(&e, MessageKind::Update, Some(&o))
        .await
        .unwrap();
    let rows = index.outbox_after(0, 10).await.unwrap();
    let Some(Queued::Event(MessageKind::Start, start)) = &rows[0].message else {
        panic!("{rows:?}")
    };
    assert_eq!((start.label.as_str(), start.score), ("", 1.5));
    assert_eq!(start.clip_ids, ["c1"]);
    assert_eq!(start.started_at, t0);
    let Some(Queued::Event(MessageKind::Update, update)) = &rows[1].message else {
        panic!("{rows:?}")
    };
    assert_eq!((update.label.as_str(), update.score), ("person", 4.25));
    assert_eq!(update.clip_ids, ["c1", "c2"]);
}

#[tokio::test]
async fn the_end_message_is_queued_once_after_the_last_clip() {
    let (_dir, index) = temp_index().await;
    let o = outbox(100);
    let t0 = time(1_800_000_000_000);
    let mut e = event("ev1", t0);
    index.upsert_event(&e).await.unwrap();
    index
        .insert_clip("c1", "ev1", "clips/c1.mp4", t0, t0)
        .await
        .unwrap();
    assert!(
        !index.queue_end_once("ev1", &o).await.unwrap(),
        "event still open"
    );
    e.ended_at = Some(t0 + chrono::Duration::seconds(5));
    index.upsert_event(&e).await.unwrap();
    assert!(
        !index.queue_end_once("ev1", &o).await.unwrap(),
        "clip still recording"
    );
    index
        .set_clip_status("c1", ClipStatus::Complete)
        .await
        .unwrap();
    assert!(index.queue_end_once("ev1", &o).await.unwrap());
    assert!(!index.queue_end_once("ev1", &o).await.unwrap(), "only once");
    let rows = index.outbox_after(0, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    let Some(Queued::End(ended, clips)) = &rows[0].message else {
        panic!("{rows:?}")
    };
    assert_eq!(ended.ended_at, e.ended_at);
    assert_eq!(ended.clip_ids, ["c1"]);
    assert_eq!(clips.len(), 1);
}

#[tokio::test]
async fn an_event_cut_short_still_owes_its_end() {
    let (_dir, index) = temp_index().await;
    let o = outbox(100);
    let t0 = time(1_800_000_000_000);
    let mut e = event("ev2", t0);
    index
        .upsert_event_and_queue(&e, MessageKind::Start, Some(&o))
        .await
        .unwrap();
    assert!(
        index.events_owing_an_end().await.unwrap().is_empty(),
        "still open"
    );
    // A crash: recovery closes the event.
    e.ended_at = Some(t0);
    index.upsert_event(&e).await.unwrap();
    assert_eq!(index.events_owing_an_end().await.unwrap(), ["ev2"]);
    assert!(index.queue_end_once("ev2", &o).await.unwrap());
    assert!(index.events_owing_an_end().await.unwrap().is_empty());
}

#[tokio::test]
async fn fragments_go_from_pending_to_persisted_and_settle_their_clip() {
    let (_dir, index) = temp_index().await;
    let t0 = Utc.timestamp_millis_opt(1_763_700_000_000).unwrap();
    index.upsert_event(&event("e1", t0)).await.unwrap();
    index
        .insert_clip("c1", "e1", "c1.mp4.part", t0, t0)
        .await
        .unwrap();
    index
        .set_upload_state("c1", upload_state::PENDING)
        .await
        .unwrap();
    let gop = |first: u64, ms: i64| NewFragment {
        clip_id: Some("c1"),
        first_frame: first,
        frames: 30,
        start_at: t0 + chrono::Duration::milliseconds(ms),
        end_at: t0 + chrono::Duration::milliseconds(ms + 1_900),
    };
    let a = index.insert_fragment(&gop(0, 0)).await.unwrap();
    let b = index.insert_fragment(&gop(30, 2_000)).await.unwrap();
    assert_eq!(index.upload_backlog().await.unwrap(), 2);
    let pending = index.pending_fragments().await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(pending[1].first_frame, 30);
    assert_eq!(
        pending[1].start_at,
        t0 + chrono::Duration::milliseconds(2_000)
    );

    index
        .fragment_persisted(a, Some("9134385233318150"), t0)
        .await
        .unwrap();
    assert_eq!(index.clip("c1").await.unwrap().upload_state, "uploading");
    assert_eq!(
        index.settle_clip_upload("c1").await.unwrap(),
        None,
        "b pending"
    );
    // Only finished clips are settled by the uploader.
    assert!(index.clips_to_upload().await.unwrap().is_empty());
    index
        .set_clip_status("c1", ClipStatus::Complete)
        .await
        .unwrap();
    assert_eq!(index.clips_to_upload().await.unwrap(), ["c1"]);

    index.fragment_skipped(b, 4006).await.unwrap();
    assert_eq!(index.upload_backlog().await.unwrap(), 0);
    assert_eq!(
        index.settle_clip_upload("c1").await.unwrap(),
        Some(upload_state::FAILED),
        "a refused fragment leaves the clip failed"
    );
    assert!(index.clips_to_upload().await.unwrap().is_empty());
    assert_eq!(index.clip_fragments("c1").await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_command_line_reads_without_migrating_or_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE);
    // A database the daemon never set up is refused, and left as it was.
    let bare = Index::open_read_only(&path).await;
    assert!(bare.is_err(), "no such file");
    std::fs::File::create(&path).unwrap();
    let err = Index::open_read_only(&path).await.err().unwrap();
    assert!(err.to_string().contains("start the daemon once"), "{err}");
    // Set up by the daemon: readable, not writable.
    let daemon = Index::open(&path).await.unwrap();
    let reader = Index::open_read_only(&path).await.unwrap();
    assert!(reader.clips(None, None, 10).await.unwrap().is_empty());
    assert!(
        reader.set_setting("detect", "off").await.is_err(),
        "read-only"
    );
    daemon.set_setting("detect", "on").await.unwrap();
    assert_eq!(
        reader.setting("detect").await.unwrap().as_deref(),
        Some("on")
    );
}

#[tokio::test]
async fn pruning_keeps_what_exists_and_drops_what_is_long_gone() {
    let (_dir, index) = temp_index().await;
    let now = Utc::now();
    let long_ago = now - KEEP_DELETED - chrono::Duration::days(1);
    let event = |id: &str, at: DateTime<Utc>| EventInfo {
        id: id.into(),
        label: "motion".into(),
        trigger: TriggerKind::Motion,
        score: 1.0,
        started_at: at,
        ended_at: Some(at),
        clip_ids: vec![],
        labels: Default::default(),
        zones: Default::default(),
    };
    // An old event whose clip was deleted, and a recent one whose clip exists.
    index.upsert_event(&event("old", long_ago)).await.unwrap();
    index
        .insert_clip("c-old", "old", "clips/a.mp4", long_ago, long_ago)
        .await
        .unwrap();
    index
        .set_clip_status("c-old", ClipStatus::Deleted)
        .await
        .unwrap();
    index.upsert_event(&event("new", now)).await.unwrap();
    index
        .insert_clip("c-new", "new", "clips/b.mp4", now, now)
        .await
        .unwrap();
    // The old clip's fragment went up; a continuous fragment from long ago, one pending.
    let fragment = |clip: Option<&'static str>, at: DateTime<Utc>| NewFragment {
        clip_id: clip,
        first_frame: 0,
        frames: 15,
        start_at: at,
        end_at: at,
    };
    let f1 = index
        .insert_fragment(&fragment(Some("c-old"), long_ago))
        .await
        .unwrap();
    index
        .fragment_persisted(f1, Some("1"), long_ago)
        .await
        .unwrap();
    let f2 = index
        .insert_fragment(&fragment(None, long_ago))
        .await
        .unwrap();
    index
        .fragment_persisted(f2, Some("2"), long_ago)
        .await
        .unwrap();
    index
        .insert_fragment(&fragment(None, long_ago))
        .await
        .unwrap(); // pending: kept
                   // A clip uploaded long ago: its fragment rows are no longer needed; the clip stays.
    index
        .insert_clip("c-up", "new", "clips/c.mp4", long_ago, long_ago)
        .await
        .unwrap();
    let f3 = index
        .insert_fragment(&fragment(Some("c-up"), long_ago))
        .await
        .unwrap();
    index
        .fragment_persisted(f3, Some("3"), long_ago)
        .await
        .unwrap();
    index
        .set_upload_state("c-up", upload_state::UPLOADED)
        .await
        .unwrap();
    // The open clip's fragment just went up: kept while its upload goes on.
    let f4 = index
        .insert_fragment(&fragment(Some("c-new"), now))
        .await
        .unwrap();
    index.fragment_persisted(f4, Some("4"), now).await.unwrap();

    let pruned = index.prune(now).await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            fragments: 3,
            clips: 1,
            events: 1
        }
    );
    assert!(
        index.clip("c-old").await.is_err(),
        "the deleted clip's row is gone"
    );
    assert!(index.clip("c-new").await.is_ok());
    assert!(index.clip("c-up").await.is_ok(), "an uploaded clip stays");
    assert_eq!(index.clip_fragments("c-new").await.unwrap().len(), 1);
    assert_eq!(
        index.upload_backlog().await.unwrap(),
        1,
        "pending fragments stay"
    );
    assert_eq!(index.prune(now).await.unwrap(), Pruned::default());
}

#[tokio::test]
async fn times_recorded_before_the_clock_was_set_are_corrected() {
    let (_dir, index) = temp_index().await;
    // An event of an earlier run, on a set clock, and one of this run, in 1970.
    let earlier = time(1_790_000_000_000);
    index.upsert_event(&event("old", earlier)).await.unwrap();
    let t0 = time(100_000);
    index.upsert_event(&event("e1", t0)).await.unwrap();
    index
        .insert_clip("c1", "e1", "clips/c1.mp4.part", t0, t0)
        .await
        .unwrap();
    let delta = chrono::Duration::milliseconds(1_796_083_200_000 - 104_000);
    let c = crate::clock::Correction {
        since: time(90_000),
        until: time(104_000),
        delta,
    };
    let o = outbox(100);
    let state = r#"{"recording":true}"#;
    index
        .queue_state(MessageKind::State, state, t0, &o)
        .await
        .unwrap();
    // started_at of e1, start_at of c1 (open events and clips have no end yet), the
    // queued state's time.
    assert_eq!(index.correct_times(&c).await.unwrap(), 3);
    let queued = index.outbox_after(0, 1).await.unwrap().remove(0).message;
    assert_eq!(
        queued,
        Some(Queued::State(MessageKind::State, state.into(), t0 + delta))
    );
    assert_eq!(index.clip("c1").await.unwrap().start_at, t0 + delta);
    assert_eq!(
        index.event_range("old").await.unwrap().map(|r| r.0),
        Some(earlier),
        "an earlier run's times stay"
    );
    assert_eq!(
        index.correct_times(&c).await.unwrap(),
        0,
        "corrected times are outside the range: correcting twice changes nothing"
    );
}
