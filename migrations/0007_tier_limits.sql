-- Why: `chatapp tiers set` changes a tier's limit on a running server. Tiers are defined in
-- models.toml; a value set here replaces one limit of one tier (for every model, '' , or for
-- one), on top of the file, until it is cleared, so an admin need not edit and restart.

CREATE TABLE tier_limits (
    tier        TEXT NOT NULL,
    model       TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL CHECK (kind IN ('requests_per_minute', 'tokens_per_minute',
                                              'requests_per_day', 'tokens_per_day',
                                              'concurrent_streams')),
    value       INTEGER CHECK (value IS NULL OR value >= 0),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (tier, model, kind)
);
