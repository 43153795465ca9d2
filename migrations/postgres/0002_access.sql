-- Access control: API keys, the usage ledger, the audit log and the prompt
-- log. Times are Unix seconds, UTC; days are 'YYYY-MM-DD', UTC, so that they
-- sort and compare as text.

-- One row per API key. Only a hash of the secret is kept: a copy of the
-- database does not give anyone a working key.
CREATE TABLE api_keys (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    -- Lowercase hex SHA-256 of the key's secret part.
    secret_hash         text NOT NULL,
    scopes              text[] NOT NULL,
    -- NULL: every collection.
    collections         text[],
    -- Empty array: any address.
    allow_ips           text[] NOT NULL,
    requests_per_minute bigint CHECK (requests_per_minute >= 0),
    tokens_per_day      bigint CHECK (tokens_per_day >= 0),
    created_at          bigint NOT NULL,
    expires_at          bigint,
    revoked_at          bigint,
    last_used_at        bigint,
    -- The key that replaced this one in a rotation.
    rotated_to          text
);

-- What each principal spent, per route, model and day. Writers add to a row
-- with an upsert, so servers sharing the database never lose counts. The
-- key leads with (principal, day), which is what a daily quota looks up.
CREATE TABLE usage (
    principal         text NOT NULL,
    day               text NOT NULL CHECK (day ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    route             text NOT NULL,
    model             text NOT NULL,
    requests          bigint NOT NULL CHECK (requests >= 0),
    prompt_tokens     bigint NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens bigint NOT NULL CHECK (completion_tokens >= 0),
    embedding_tokens  bigint NOT NULL CHECK (embedding_tokens >= 0),
    PRIMARY KEY (principal, day, route, model)
);

CREATE INDEX usage_by_day ON usage (day);

-- The audit log; grounded only appends to it. The id keeps events of the
-- same second in the order they were written.
CREATE TABLE audit_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        bigint NOT NULL,
    kind      text NOT NULL,
    principal text,
    client    text,
    detail    text NOT NULL
);

CREATE INDEX audit_events_by_time ON audit_events (at, id);

-- Prompts and answers, already redacted, when the operator turned prompt
-- logging on; purged by age.
CREATE TABLE prompt_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        bigint NOT NULL,
    principal text NOT NULL,
    route     text NOT NULL,
    prompt    text NOT NULL,
    answer    text NOT NULL
);

CREATE INDEX prompt_log_by_time ON prompt_log (at, id);
