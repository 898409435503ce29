-- orderdesk schema v4 (Postgres): which node owns each account, and the fencing epoch.
-- With [cluster], a node that acquires an account's Redis lease bumps `epoch` here (insert at 1
-- if absent); every store write on behalf of the account then reads its row FOR SHARE in the
-- write's own transaction and is refused unless the epoch is still the writer's. Without
-- [cluster] the table stays empty and nothing reads it.
CREATE TABLE account_owner (
    account      TEXT PRIMARY KEY,
    epoch        BIGINT NOT NULL,
    node         TEXT NOT NULL,
    acquired_at  DOUBLE PRECISION NOT NULL
);
