-- 000 schema_migrations: the ledger of applied schema files.
--
-- Answers: which versioned files under queries/schema/ have been applied to this database, when, and with
-- which content (sha256 of the file as committed, before placeholders are rendered).  `loomgate migrate`
-- runs this file before anything else on every start; a file whose checksum differs from the recorded one
-- is an error: applied files are immutable, changes go into a new numbered file.
-- Parameters: none.  Placeholders: {{DB}}, {{ON_CLUSTER}}, {{ENGINE:MergeTree}}.

-- On a cluster the database must exist on every node before the ON CLUSTER tables below.
CREATE DATABASE IF NOT EXISTS {{DB}} {{ON_CLUSTER}};

CREATE TABLE IF NOT EXISTS {{DB}}.loomgate_schema_migrations {{ON_CLUSTER}}
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = {{ENGINE:MergeTree}}
ORDER BY version;
