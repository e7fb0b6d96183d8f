-- Every change to an account's customers moves the account's change count
-- in the change's own transaction, so that a remembered page start can be
-- known to be stale, whichever server made the change. Triggers, rather
-- than each write method, do it so that no write path can forget.
--
-- One counter row per account would be locked from each write until its
-- commit, so concurrent writes to one account would queue for it. The count
-- is therefore spread over 32 rows chosen by the writing connection, and
-- read as their sum: each committed change raises the sum, nothing lowers
-- it, so an unchanged sum means no change committed in between.
CREATE TABLE account_changes (
    account_id  bigint  NOT NULL REFERENCES accounts (id),
    shard       integer NOT NULL,
    changes     bigint  NOT NULL,
    PRIMARY KEY (account_id, shard)
);

CREATE FUNCTION count_account_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_changes (account_id, shard, changes)
    SELECT account_id, pg_backend_pid() % 32, count(*) FROM changed_rows GROUP BY account_id
    ON CONFLICT (account_id, shard)
    DO UPDATE SET changes = account_changes.changes + excluded.changes;
    RETURN NULL;
END
$$;

-- Statement triggers see all the rows of a statement (a COPY of a million
-- included) at once, so a bulk insert moves the count once.
CREATE TRIGGER customers_insert_counts AFTER INSERT ON customers
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_account_changes();
CREATE TRIGGER customers_update_counts AFTER UPDATE ON customers
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_account_changes();
CREATE TRIGGER customers_delete_counts AFTER DELETE ON customers
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_account_changes();
