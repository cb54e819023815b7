-- MQTT messages written before they are sent, deleted on PUBACK, replayed in order
-- after a reconnect or a restart.

CREATE TABLE mqtt_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- send order
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    retain      INTEGER NOT NULL CHECK (retain IN (0, 1)),
    kind        TEXT NOT NULL CHECK (kind IN ('start', 'update', 'end', 'state')),
    event_id    TEXT,
    created_at  INTEGER NOT NULL                     -- UTC ms
) STRICT;

CREATE INDEX mqtt_outbox_kind ON mqtt_outbox (kind, seq);

-- Set once an event's `start` message has been queued: its `end` is owed, even after a
-- crash cut the event short.
ALTER TABLE events ADD COLUMN start_queued INTEGER NOT NULL DEFAULT 0;
-- Set once an event's `end` message has been queued, so it is queued exactly once
-- whichever comes last: the event's end or its last clip being finished.
ALTER TABLE events ADD COLUMN end_queued INTEGER NOT NULL DEFAULT 0;
