-- Why: conversations become something people organise (tags, folder, pinned, archived) and
-- messages carry how their generation ended, so the TUI can show and continue them. A send
-- with an Idempotency-Key is remembered so a retried request never generates twice.

ALTER TABLE conversations ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE conversations ADD COLUMN folder TEXT;
ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
CREATE INDEX conversations_listing ON conversations(user_id, deleted_at, updated_at DESC, id DESC);

ALTER TABLE messages ADD COLUMN finish_reason TEXT;
ALTER TABLE messages ADD COLUMN request_id TEXT;
ALTER TABLE messages ADD COLUMN updated_at TEXT;

CREATE TABLE idempotency_keys (
    user_id          INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key              TEXT NOT NULL,
    conversation_id  TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    user_message_id  TEXT NOT NULL,
    reply_id         TEXT NOT NULL,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (user_id, key)
);
