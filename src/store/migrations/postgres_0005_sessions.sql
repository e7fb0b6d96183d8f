-- Dashboard sessions. Only a digest of the session id is kept, so that a
-- copy of the database cannot be used to take over a session; key_id ties a
-- session to the key it was signed in with, so that revoking the key ends it.
CREATE TABLE sessions (
    digest        bytea   PRIMARY KEY,
    account_id    bigint  NOT NULL REFERENCES accounts (id),
    key_id        bigint  NOT NULL REFERENCES api_keys (id),
    csrf          text    NOT NULL,
    created_at    bigint  NOT NULL,
    last_seen_at  bigint  NOT NULL
);
CREATE INDEX sessions_by_key ON sessions (key_id);
CREATE INDEX sessions_by_last_seen ON sessions (last_seen_at);
CREATE INDEX sessions_by_created ON sessions (created_at);
