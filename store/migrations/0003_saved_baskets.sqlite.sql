-- orderdesk schema v3 (SQLite): baskets a trader saved under a name, per account (the page's
-- "Saved" control). `legs` is the list of orders as a batch request takes them; nothing in
-- this table is ever placed by orderdesk itself.
CREATE TABLE saved_baskets (
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    legs        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (account, name)
);
