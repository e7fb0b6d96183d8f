-- The recorded answers of requests that carried an Idempotency-Key, kept
-- so that a retry gets the same answer instead of making the change again.
-- customer_id names the customer whose data an answer carries, so that
-- deleting the customer deletes those answers too.
CREATE TABLE idempotency_keys (
    account_id   INTEGER NOT NULL REFERENCES accounts (id),
    key          TEXT    NOT NULL,
    fingerprint  BLOB    NOT NULL,
    status       INTEGER NOT NULL,
    headers      TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    customer_id  INTEGER,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_by_customer ON idempotency_keys (account_id, customer_id)
    WHERE customer_id IS NOT NULL;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
