-- The MQTT outbox holds facts, not finished messages: the kind of message, the event it
-- is about and the values that change from one message to the next. The MQTT session
-- builds the JSON when it sends, from these and the event's own row, so the times in it
-- are those of the index (corrected with them when the clock is set late) and a user's
-- label is never rewritten.

CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- send order
    kind        TEXT NOT NULL CHECK (kind IN ('start', 'update', 'end', 'state', 'talk')),
    event_id    TEXT REFERENCES events (id),        -- start, update, end
    label       TEXT,                               -- start, update: the event's label then
    score       REAL,                               -- start, update: its highest score then
    clip_ids    TEXT,                               -- start, update: JSON array of its clips then
    facts       TEXT,                               -- state, talk: JSON object, no times in it
    at          INTEGER NOT NULL,                   -- UTC ms: when the facts held
    CHECK ((kind IN ('start', 'update', 'end')) = (event_id IS NOT NULL)),
    CHECK ((kind IN ('state', 'talk')) = (facts IS NOT NULL))
) STRICT;

CREATE INDEX outbox_kind ON outbox (kind, seq);

-- Messages queued by an older edgecam: their facts are read out of the JSON they were
-- queued as. Event messages whose event row is gone, or whose JSON cannot be read, are
-- dropped (their event cannot be described any more).
INSERT INTO outbox (seq, kind, event_id, label, score, clip_ids, facts, at)
SELECT
    o.seq,
    CASE WHEN o.kind = 'state' AND o.topic LIKE '%/talk' THEN 'talk' ELSE o.kind END,
    CASE WHEN o.kind = 'state' THEN NULL ELSE o.event_id END,
    CASE WHEN o.kind IN ('start', 'update') THEN json_extract(o.p, '$.label') END,
    CASE WHEN o.kind IN ('start', 'update') THEN json_extract(o.p, '$.score') END,
    CASE WHEN o.kind IN ('start', 'update')
        THEN json(COALESCE(json_extract(o.p, '$.clip_ids'), '[]')) END,
    CASE WHEN o.kind = 'state'
        THEN json_remove(o.p, '$.v', '$.camera', '$.at') END,
    COALESCE(
        CAST(round(unixepoch(json_extract(o.p, '$.at'), 'subsec') * 1000) AS INTEGER),
        o.created_at)
FROM (SELECT seq, kind, topic, event_id, created_at, CAST(payload AS TEXT) AS p
      FROM mqtt_outbox) o
WHERE json_valid(o.p)
  AND (o.kind = 'state' OR EXISTS (SELECT 1 FROM events e WHERE e.id = o.event_id));

DROP TABLE mqtt_outbox;
