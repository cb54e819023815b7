-- Events and their clips. Times are UTC milliseconds since the Unix epoch.

CREATE TABLE events (
    id          TEXT PRIMARY KEY NOT NULL,      -- ULID
    label       TEXT NOT NULL,
    trigger     TEXT NOT NULL,                  -- motion | http | mqtt | data_channel | cli
    score       REAL NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,                        -- NULL while the event is open
    status      TEXT NOT NULL CHECK (status IN ('open', 'ended'))
) STRICT;

CREATE INDEX events_started_at ON events (started_at);

CREATE TABLE clips (
    id           TEXT PRIMARY KEY NOT NULL,     -- ULID; the file is <id>.mp4
    event_id     TEXT NOT NULL REFERENCES events (id),
    path         TEXT NOT NULL,                 -- relative to storage.data_dir
    status       TEXT NOT NULL CHECK (status IN ('recording', 'complete', 'recovered', 'deleted')),
    start_at     INTEGER NOT NULL,              -- capture time of the first frame
    end_at       INTEGER,                       -- capture time of the last frame
    duration_ms  INTEGER,
    frame_count  INTEGER,
    bytes        INTEGER,
    width        INTEGER,
    height       INTEGER,
    thumbnail    TEXT,                          -- relative path of the JPEG, if any
    frames_lost  INTEGER NOT NULL DEFAULT 0,    -- frames the recorder missed (a gap)
    upload_state TEXT NOT NULL DEFAULT 'none'   -- none | pending | uploading | uploaded | failed
        CHECK (upload_state IN ('none', 'pending', 'uploading', 'uploaded', 'failed')),
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX clips_start_at ON clips (start_at);
CREATE INDEX clips_event_id ON clips (event_id);
CREATE INDEX clips_status ON clips (status);

-- Run-time choices that survive restarts (e.g. detect on/off).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;
