-- KVS upload progress, one row per fragment (one GOP of a clip, or of the live stream in
-- continuous mode). The uploader restarts from the rows still 'pending'.

CREATE TABLE fragments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order
    clip_id         TEXT REFERENCES clips (id),         -- NULL in continuous mode
    first_frame     INTEGER NOT NULL,                   -- index of its first sample in the clip
    frames          INTEGER NOT NULL,
    start_at        INTEGER NOT NULL,                   -- capture time of the first frame, UTC ms
    end_at          INTEGER NOT NULL,                   -- capture time of the last frame
    state           TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'persisted', 'skipped')),
    error_code      INTEGER,                            -- why it was skipped
    fragment_number TEXT,                               -- KVS's, once persisted
    persisted_at    INTEGER
) STRICT;

CREATE INDEX fragments_state ON fragments (state, start_at);
CREATE INDEX fragments_clip ON fragments (clip_id, first_frame);
