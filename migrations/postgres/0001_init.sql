-- The metadata store of grounded on Postgres: documents, their chunks, and
-- the embedding cache. Vectors of chunks live in the vector index; the chunks
-- table is the record of which points are visible to search.

CREATE TABLE documents (
    id            uuid PRIMARY KEY,
    collection    text NOT NULL,
    source_path   text NOT NULL,
    kind          text NOT NULL,
    -- SHA-256 of the file's bytes as last committed; empty until the first commit.
    content_hash  text NOT NULL,
    -- Hash of what else decides the chunks: model, chunk sizes, extractor.
    settings_hash text NOT NULL DEFAULT '',
    title         text,
    state         text NOT NULL CHECK (state IN ('indexing', 'ready')),
    chunk_count   integer NOT NULL DEFAULT 0,
    -- Facts about the file that do not decide its chunks (encoding, size).
    metadata      jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, source_path)
);

CREATE TABLE chunks (
    id          uuid PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal     integer NOT NULL,
    text        text NOT NULL,
    text_hash   text NOT NULL,
    token_count integer NOT NULL,
    line_start  integer NOT NULL,
    line_end    integer NOT NULL,
    -- The heading path as a JSON array of strings, outermost first.
    section     jsonb NOT NULL,
    anchor      text,
    -- Also the index for a document's chunks.
    UNIQUE (document_id, ordinal)
);

-- Embeddings keyed by model and text hash. A vector is little-endian f32
-- bytes, as in the SQLite store: 4 bytes a dimension with no per-element
-- overhead, read and written without conversion, and identical on both
-- backends, so a cache moves between them byte for byte.
CREATE TABLE embeddings (
    model_id   text NOT NULL,
    text_hash  text NOT NULL,
    dimension  integer NOT NULL CHECK (dimension > 0),
    vector     bytea NOT NULL CHECK (octet_length(vector) = 4 * dimension),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, text_hash)
);
