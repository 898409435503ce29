-- orderdesk schema v5 (SQLite): the shared access tokens of cluster mode, kept so the schemas
-- stay in step. A cluster needs Postgres: never written here.
CREATE TABLE access_tokens (
    account     TEXT PRIMARY KEY,
    sealed      TEXT NOT NULL,
    node        TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
