-- The recorded answers of requests that carried an Idempotency-Key, kept
-- so that a retry gets the same answer instead of making the change again.
-- customer_id names the customer whose data an answer carries, so that
-- deleting the customer deletes those answers too.
CREATE TABLE idempotency_keys (
    account_id   bigint NOT NULL REFERENCES accounts (id),
    key          text COLLATE "C" NOT NULL,
    fingerprint  bytea NOT NULL,
    status       integer NOT NULL,
    headers      text NOT NULL,
    body         bytea NOT NULL,
    customer_id  bigint,
    created_at   bigint NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_by_customer ON idempotency_keys (account_id, customer_id)
    WHERE customer_id IS NOT NULL;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
