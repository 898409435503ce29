-- orderdesk schema v5 (Postgres): the day's broker access tokens, shared by the nodes of a
-- cluster. `sealed` is the token encrypted by the node that received it (Fernet, with the key
-- of ORDERDESK_TOKEN_KEY, which the store never sees); a node that takes an account over loads
-- it from here. Without [cluster] the table stays empty.
CREATE TABLE access_tokens (
    account     TEXT PRIMARY KEY,
    sealed      TEXT NOT NULL,
    node        TEXT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);
