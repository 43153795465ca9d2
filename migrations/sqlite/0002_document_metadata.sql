-- Facts about a document's file that do not decide its chunks (encoding,
-- size), as a JSON object.
ALTER TABLE documents ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
