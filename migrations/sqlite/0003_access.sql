-- Access control: API keys, the usage ledger, the audit log and the prompt
-- log. Times are Unix seconds, UTC; days are 'YYYY-MM-DD', UTC, so that they
-- sort and compare as text. Lists are JSON arrays of strings.

-- One row per API key. Only a hash of the secret is kept: a copy of the
-- database does not give anyone a working key.
CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY NOT NULL,
    name                TEXT NOT NULL,
    -- Lowercase hex SHA-256 of the key's secret part.
    secret_hash         TEXT NOT NULL,
    scopes              TEXT NOT NULL,
    -- NULL: every collection.
    collections         TEXT,
    -- Empty array: any address.
    allow_ips           TEXT NOT NULL,
    requests_per_minute INTEGER CHECK (requests_per_minute >= 0),
    tokens_per_day      INTEGER CHECK (tokens_per_day >= 0),
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER,
    revoked_at          INTEGER,
    last_used_at        INTEGER,
    -- The key that replaced this one in a rotation.
    rotated_to          TEXT
);

-- What each principal spent, per route, model and day. Writers add to a row
-- with an upsert, so servers sharing the database never lose counts. The
-- key leads with (principal, day), which is what a daily quota looks up.
CREATE TABLE usage (
    principal         TEXT NOT NULL,
    day               TEXT NOT NULL
        CHECK (day GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]'),
    route             TEXT NOT NULL,
    model             TEXT NOT NULL,
    requests          INTEGER NOT NULL CHECK (requests >= 0),
    prompt_tokens     INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
    embedding_tokens  INTEGER NOT NULL CHECK (embedding_tokens >= 0),
    PRIMARY KEY (principal, day, route, model)
) WITHOUT ROWID;

CREATE INDEX usage_by_day ON usage (day);

-- The audit log; grounded only appends to it. The id keeps events of the
-- same second in the order they were written.
CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    principal TEXT,
    client    TEXT,
    detail    TEXT NOT NULL
);

CREATE INDEX audit_events_by_time ON audit_events (at, id);

-- Prompts and answers, already redacted, when the operator turned prompt
-- logging on; purged by age.
CREATE TABLE prompt_log (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    principal TEXT NOT NULL,
    route     TEXT NOT NULL,
    prompt    TEXT NOT NULL,
    answer    TEXT NOT NULL
);

CREATE INDEX prompt_log_by_time ON prompt_log (at, id);
