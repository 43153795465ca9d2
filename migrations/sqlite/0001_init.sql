-- The metadata store of grounded on SQLite: documents, their chunks, and the
-- embedding cache. Vectors of chunks live in the vector index; the chunks
-- table is the record of which points are visible to search.

CREATE TABLE documents (
    id           TEXT PRIMARY KEY NOT NULL,
    collection   TEXT NOT NULL,
    source_path  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    -- SHA-256 of the file's bytes as last committed; empty until the first commit.
    content_hash TEXT NOT NULL,
    -- Hash of what else decides the chunks: model, chunk sizes, extractor.
    settings_hash TEXT NOT NULL DEFAULT '',
    title        TEXT,
    state        TEXT NOT NULL CHECK (state IN ('indexing', 'ready')),
    chunk_count  INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (collection, source_path)
);

CREATE TABLE chunks (
    id          TEXT PRIMARY KEY NOT NULL,
    document_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    text_hash   TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    line_start  INTEGER NOT NULL,
    line_end    INTEGER NOT NULL,
    -- The heading path as a JSON array of strings, outermost first.
    section     TEXT NOT NULL,
    anchor      TEXT,
    UNIQUE (document_id, ordinal)
);

CREATE INDEX chunks_by_document ON chunks (document_id);

-- Embeddings keyed by model and text hash; vectors as little-endian f32.
CREATE TABLE embeddings (
    model_id   TEXT NOT NULL,
    text_hash  TEXT NOT NULL,
    dimension  INTEGER NOT NULL,
    vector     BLOB NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (model_id, text_hash)
) WITHOUT ROWID;
