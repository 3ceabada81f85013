-- Why: quotas and the usage ledger. Admins override single limits per org, user or key (and
-- optionally per model) without touching models.toml; and every request's usage is first
-- written here, in the same transaction as whatever else the request stores, then moved to
-- the DuckDB ledger in batches, so a crash loses no usage and nothing is counted twice.

CREATE TABLE limit_overrides (
    level       TEXT NOT NULL CHECK (level IN ('org', 'user', 'key')),
    subject_id  INTEGER NOT NULL,
    model       TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL CHECK (kind IN ('requests_per_minute', 'tokens_per_minute',
                                              'requests_per_day', 'tokens_per_day',
                                              'concurrent_streams')),
    value       INTEGER CHECK (value IS NULL OR value >= 0),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (level, subject_id, model, kind)
);

CREATE TABLE usage_outbox (
    request_id         TEXT PRIMARY KEY,
    ts                 REAL NOT NULL,
    key_id             INTEGER,
    user_id            INTEGER,
    org_id             INTEGER,
    conversation_id    TEXT,
    model              TEXT NOT NULL,
    upstream           TEXT,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    ttft_ms            REAL,
    latency_ms         REAL,
    status             TEXT NOT NULL CHECK (status IN ('ok', 'error', 'cancelled', 'filtered',
                                                       'rate_limited')),
    cost               REAL NOT NULL DEFAULT 0
);
