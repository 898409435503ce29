-- orderdesk schema v6 (Postgres): client tokens rotated since they were configured. `digest`
-- is the hex SHA-256 of the token's value now (the value itself is never stored); `replaced`
-- that of the value orderdesk.toml gave when it was first rotated: while the file still gives
-- that value, the rotation stands (after a restart, on every node); a new value in the file
-- wins over it.
CREATE TABLE token_rotations (
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    replaced    TEXT NOT NULL,
    rotated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (account, name)
);
