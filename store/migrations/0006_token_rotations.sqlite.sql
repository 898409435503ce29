-- orderdesk schema v6 (SQLite): client tokens rotated since they were configured (see the
-- Postgres file): a rotation outlives a restart.
CREATE TABLE token_rotations (
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    replaced    TEXT NOT NULL,
    rotated_at  REAL NOT NULL,
    PRIMARY KEY (account, name)
);
