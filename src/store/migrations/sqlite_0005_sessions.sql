-- Dashboard sessions. Only a digest of the session id is kept, so that a
-- copy of the database cannot be used to take over a session; key_id ties a
-- session to the key it was signed in with, so that revoking the key ends it.
CREATE TABLE sessions (
    digest        BLOB    PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (id),
    key_id        INTEGER NOT NULL REFERENCES api_keys (id),
    csrf          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX sessions_by_key ON sessions (key_id);
CREATE INDEX sessions_by_last_seen ON sessions (last_seen_at);
CREATE INDEX sessions_by_created ON sessions (created_at);
