-- orderdesk schema v4 (SQLite): the owner table of cluster mode, kept so the schemas stay in
-- step. A cluster needs Postgres (a [cluster] with SQLite is refused at start): never written here.
CREATE TABLE account_owner (
    account      TEXT PRIMARY KEY,
    epoch        INTEGER NOT NULL,
    node         TEXT NOT NULL,
    acquired_at  REAL NOT NULL
);
