-- What the object detector saw in an event: its labels, each with the best score
-- (a JSON object such as {"person":0.91}), and the zones the objects were in (a JSON
-- array). Events from motion or commands alone have none.

ALTER TABLE events ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE events ADD COLUMN zones TEXT NOT NULL DEFAULT '[]';
