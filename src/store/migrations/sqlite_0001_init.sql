-- Accounts, their API keys and their customers.
CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id    INTEGER NOT NULL REFERENCES accounts (id),
    prefix        TEXT    NOT NULL,
    digest        BLOB    NOT NULL UNIQUE,
    label         TEXT,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE INDEX api_keys_by_account ON api_keys (account_id);
CREATE INDEX api_keys_by_prefix ON api_keys (prefix);

-- AUTOINCREMENT, unlike a plain rowid, never hands out an id again after
-- the row that had it is deleted.
CREATE TABLE customers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL REFERENCES accounts (id),
    version          INTEGER NOT NULL,
    email            TEXT    NOT NULL,
    customer_locale  TEXT    NOT NULL,
    firstname        TEXT    NOT NULL,
    lastname         TEXT    NOT NULL,
    company          TEXT,
    company_id       TEXT,
    street           TEXT,
    city             TEXT    NOT NULL,
    postcode         TEXT    NOT NULL,
    phone            TEXT,
    country          TEXT    NOT NULL,
    sort_key         BLOB    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX customers_in_order ON customers (account_id, sort_key, id);

-- Facts about the data as a whole, such as which collation rules made the
-- stored sort keys.
CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
