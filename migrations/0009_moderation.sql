-- Why: every moderation decision (a blocked question, an answer cut off, a flag) is kept for
-- admins to read: when, whose key, which policy, category, score, action and an excerpt.

CREATE TABLE moderation_log (
    id               INTEGER PRIMARY KEY,
    ts               TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    direction        TEXT NOT NULL CHECK (direction IN ('input', 'output')),
    action           TEXT NOT NULL CHECK (action IN ('block', 'flag')),
    category         TEXT NOT NULL,
    score            REAL,
    source           TEXT NOT NULL CHECK (source IN ('rule', 'classifier')),
    policy           TEXT NOT NULL,
    excerpt          TEXT NOT NULL DEFAULT '',
    key_id           INTEGER,
    user_id          INTEGER,
    org_id           INTEGER,
    model            TEXT,
    conversation_id  TEXT,
    request_id       TEXT
);
CREATE INDEX moderation_log_ts ON moderation_log(ts);
CREATE INDEX moderation_log_user ON moderation_log(user_id, ts);
