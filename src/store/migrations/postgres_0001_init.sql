-- Accounts, their API keys and their customers.
--
-- Indexed text columns use the "C" collation: their indexes then compare
-- bytes and never depend on the operating system's locale data, whose
-- upgrades can silently reorder (and so corrupt) an index.
CREATE TABLE accounts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE,
    created_at  bigint NOT NULL
);

CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint NOT NULL REFERENCES accounts (id),
    prefix        text COLLATE "C" NOT NULL,
    digest        bytea NOT NULL UNIQUE,
    label         text,
    created_at    bigint NOT NULL,
    last_used_at  bigint,
    revoked_at    bigint
);
CREATE INDEX api_keys_by_account ON api_keys (account_id);
CREATE INDEX api_keys_by_prefix ON api_keys (prefix);

-- An identity column draws from a sequence, which never hands out a value
-- twice, whichever server asks and whether or not its transaction commits.
-- The list order is by sort_key, a bytea: bytea is not a collatable type,
-- so it compares byte by byte (then shorter first), exactly as Rust and
-- SQLite compare the same bytes, whatever the database's collation.
CREATE TABLE customers (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       bigint NOT NULL REFERENCES accounts (id),
    version          bigint NOT NULL,
    email            text NOT NULL,
    customer_locale  text NOT NULL,
    firstname        text NOT NULL,
    lastname         text NOT NULL,
    company          text,
    company_id       text,
    street           text,
    city             text NOT NULL,
    postcode         text NOT NULL,
    phone            text,
    country          text NOT NULL,
    sort_key         bytea NOT NULL,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL
);
CREATE INDEX customers_in_order ON customers (account_id, sort_key, id);

-- Facts about the data as a whole, such as which collation rules made the
-- stored sort keys.
CREATE TABLE meta (
    key    text COLLATE "C" PRIMARY KEY,
    value  text NOT NULL
);
