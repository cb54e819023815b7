//! Upgrades of populated indexes of every earlier schema version: each one ends with the
//! schema of a fresh index, keeps its rows (converting those a migration reshapes), and
//! leaves a copy of the old file beside it.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::SqlitePool;

use super::upgrade::{backup_path, latest_version, MIGRATOR};
use super::*;

async fn connect(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::from_str("sqlite://")
        .unwrap()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

const T0: i64 = 1_800_000_000_000;

/// Rows such as an edgecam at schema `version` wrote them: an event with two clips (one
/// finished, one being written), a setting, and from version 2 on queued MQTT messages of
/// every kind (and two that cannot be carried over), from version 3 on upload fragments.
async fn populate(pool: &SqlitePool, version: i64) {
    let mut sql = vec![
        format!(
            "INSERT INTO events (id, label, trigger, score, started_at, ended_at, status) \
             VALUES ('e1', 'door', 'http', 2.5, {T0}, {}, 'ended'), \
                    ('e2', '', 'motion', 1.0, {}, NULL, 'open')",
            T0 + 20_000,
            T0 + 60_000
        ),
        format!(
            "INSERT INTO clips (id, event_id, path, status, start_at, end_at, duration_ms, \
             thumbnail, created_at) VALUES \
             ('c1', 'e1', 'clips/c1.mp4', 'complete', {}, {}, 30000, 'clips/c1.jpg', {T0}), \
             ('c2', 'e2', 'clips/c2.mp4.part', 'recording', {}, NULL, NULL, NULL, {})",
            T0 - 5_000,
            T0 + 25_000,
            T0 + 55_000,
            T0 + 60_000
        ),
        "INSERT INTO settings (key, value) VALUES ('detect', 'off')".into(),
    ];
    if version >= 4 {
        // The outbox of facts: the same five messages as versions 2 and 3 carry over.
        let state = r#"{"recording":true,"event_id":"e2","detect":false,"motion":true,"motion_score":3.5,"motion_min_area_percent":0.5,"viewers":2,"storage_bytes":1000,"upload_backlog":0,"audio":{"enabled":true,"flowing":true}}"#;
        let talk = r#"{"talking":true,"talker":"Ann"}"#;
        sql.push(format!(
            "INSERT INTO outbox (kind, event_id, label, score, clip_ids, facts, at) VALUES \
             ('start', 'e2', '', 1.0, '[\"c2\"]', NULL, {T0}), \
             ('update', 'e2', 'person', 3.5, '[\"c2\"]', NULL, {T0}), \
             ('end', 'e1', NULL, NULL, NULL, NULL, {T0}), \
             ('state', NULL, NULL, NULL, NULL, '{state}', {}), \
             ('talk', NULL, NULL, NULL, NULL, '{talk}', {T0})",
            T0 + 62_500
        ));
        sql.push("UPDATE events SET start_queued = 1".into());
    } else if version >= 2 {
        let start = r#"{"v":1,"type":"start","event_id":"e2","label":"","trigger":"motion","score":1.0,"started_at":"2027-01-15T08:01:00.000Z","ended_at":null,"clip_ids":["c2"],"thumbnail":"/api/clips/c2.jpg","camera":"cam"}"#;
        let update = r#"{"v":1,"type":"update","event_id":"e2","label":"person","trigger":"motion","score":3.5,"started_at":"2027-01-15T08:01:00.000Z","ended_at":null,"clip_ids":["c2"],"thumbnail":null,"camera":"cam"}"#;
        let end = r#"{"v":1,"type":"end","event_id":"e1","label":"door"}"#;
        let state = r#"{"v":1,"camera":"cam","recording":true,"event_id":"e2","detect":false,"motion":true,"motion_score":3.5,"motion_min_area_percent":0.5,"viewers":2,"storage_bytes":1000,"upload_backlog":0,"audio":{"enabled":true,"flowing":true},"at":"2027-01-15T08:01:02.500Z"}"#;
        let talk = r#"{"v":1,"camera":"cam","talking":true,"talker":"Ann","at":"2027-01-15T08:01:03.000Z"}"#;
        sql.push(format!(
            "INSERT INTO mqtt_outbox (topic, payload, retain, kind, event_id, created_at) VALUES \
             ('p/events', CAST('{start}' AS BLOB), 0, 'start', 'e2', {T0}), \
             ('p/events', CAST('{update}' AS BLOB), 0, 'update', 'e2', {T0}), \
             ('p/events', CAST('{end}' AS BLOB), 0, 'end', 'e1', {T0}), \
             ('p/events', CAST('not json' AS BLOB), 0, 'update', 'e2', {T0}), \
             ('p/events', CAST('{end}' AS BLOB), 0, 'end', 'gone', {T0}), \
             ('p/state', CAST('{state}' AS BLOB), 1, 'state', NULL, {T0}), \
             ('p/talk', CAST('{talk}' AS BLOB), 1, 'state', NULL, {T0})"
        ));
        sql.push("UPDATE events SET start_queued = 1".into());
    }
    if version >= 5 {
        sql.push(
            r#"UPDATE events SET labels = '{"person":0.9}', zones = '["porch"]' WHERE id = 'e1'"#
                .into(),
        );
    }
    if version >= 3 {
        sql.push(format!(
            "INSERT INTO fragments (clip_id, first_frame, frames, start_at, end_at, state) \
             VALUES ('c1', 0, 30, {T0}, {}, 'persisted'), ('c2', 0, 15, {}, {}, 'pending')",
            T0 + 2_000,
            T0 + 55_000,
            T0 + 56_000
        ));
    }
    for statement in sql {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(pool)
            .await
            .unwrap();
    }
}

/// Every table, index and column with its type, constraints and default.
async fn schema(pool: &SqlitePool) -> Vec<String> {
    let objects: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut out = Vec::new();
    for (kind, name, sql) in objects {
        out.push(format!("{kind} {name}: {}", sql.unwrap_or_default()));
        if kind == "table" {
            let columns: Vec<(String, String, i64, Option<String>, i64)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info('{name}')"
                )))
                .fetch_all(pool)
                .await
                .unwrap();
            out.extend(columns.iter().map(|c| format!("  {name}.{c:?}")));
        }
    }
    out
}

async fn fresh_schema() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join(INDEX_FILE)).await.unwrap();
    let s = schema(index.pool()).await;
    index.close().await;
    s
}

/// Opens an index at `version`, populated as that edgecam left it, with today's code.
async fn upgraded_from(dir: &Path, version: i64) -> Index {
    let path = dir.join(INDEX_FILE);
    let pool = connect(&path).await;
    MIGRATOR.run_to(version, &pool).await.unwrap();
    populate(&pool, version).await;
    pool.close().await;
    Index::open(&path).await.unwrap()
}

#[tokio::test]
async fn every_earlier_schema_upgrades_to_a_fresh_one_and_keeps_its_rows() {
    let fresh = fresh_schema().await;
    for version in 1..latest_version() {
        let dir = tempfile::tempdir().unwrap();
        let index = upgraded_from(dir.path(), version).await;
        assert_eq!(schema(index.pool()).await, fresh, "upgraded from {version}");
        let backup = backup_path(&dir.path().join(INDEX_FILE), version);
        assert!(
            backup.exists(),
            "no copy of version {version} at {backup:?}"
        );
        let copy = connect(&backup).await;
        assert_eq!(
            upgrade::version(&copy).await,
            version,
            "the copy is the old index"
        );
        copy.close().await;

        let clip = index.clip("c1").await.unwrap();
        assert_eq!(
            (clip.status, clip.label.as_str()),
            (ClipStatus::Complete, "door")
        );
        assert_eq!(
            index.clip("c2").await.unwrap().status,
            ClipStatus::Recording
        );
        assert_eq!(
            index.setting("detect").await.unwrap().as_deref(),
            Some("off")
        );
        if version >= 3 {
            assert_eq!(index.upload_backlog().await.unwrap(), 1, "from {version}");
        }
        if version >= 2 {
            queued_messages_are_carried_over(&index).await;
        }
        index.close().await;
    }
}

/// The outbox of version 2 and 3 held finished JSON; version 4 holds its facts.
async fn queued_messages_are_carried_over(index: &Index) {
    let rows = index.outbox_after(0, 100).await.unwrap();
    let messages: Vec<Queued> = rows.into_iter().filter_map(|r| r.message).collect();
    assert_eq!(
        messages.len(),
        5,
        "unreadable and orphan rows dropped: {messages:?}"
    );
    let Queued::Event(MessageKind::Start, start) = &messages[0] else {
        panic!("{messages:?}")
    };
    assert_eq!((start.id.as_str(), start.label.as_str()), ("e2", ""));
    assert_eq!(
        (start.score, start.clip_ids.clone()),
        (1.0, vec!["c2".to_owned()])
    );
    assert_eq!(start.started_at, time(T0 + 60_000), "from the event's row");
    let Queued::Event(MessageKind::Update, update) = &messages[1] else {
        panic!("{messages:?}")
    };
    assert_eq!((update.label.as_str(), update.score), ("person", 3.5));
    let Queued::End(end, clips) = &messages[2] else {
        panic!("{messages:?}")
    };
    assert_eq!(end.ended_at, Some(time(T0 + 20_000)));
    assert_eq!(clips.len(), 1);
    let Queued::State(MessageKind::State, facts, at) = &messages[3] else {
        panic!("{messages:?}")
    };
    let facts: serde_json::Value = serde_json::from_str(facts).unwrap();
    assert_eq!(facts["viewers"], 2);
    assert!(facts.get("at").is_none() && facts.get("camera").is_none());
    assert_eq!(at.to_rfc3339(), "2027-01-15T08:01:02.500+00:00");
    let Queued::State(MessageKind::Talk, facts, _) = &messages[4] else {
        panic!("{messages:?}")
    };
    assert_eq!(facts, r#"{"talking":true,"talker":"Ann"}"#);
}

#[tokio::test]
async fn only_the_newest_copy_is_kept_and_an_up_to_date_index_is_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE);
    std::fs::write(backup_path(&path, 1), b"an older copy").unwrap();
    let index = upgraded_from(dir.path(), 2).await;
    index.close().await;
    let copies = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".bak-"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(copies(), [format!("{INDEX_FILE}.bak-2")]);
    Index::open(&path).await.unwrap().close().await;
    assert_eq!(
        copies(),
        [format!("{INDEX_FILE}.bak-2")],
        "nothing to upgrade, no copy"
    );
}
