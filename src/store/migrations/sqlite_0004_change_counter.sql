-- Every change to an account's customers moves the account's counter in
-- the change's own transaction, so that a remembered page start can be
-- known to be stale. Triggers, rather than each write method, do it so that
-- no write path (a re-keying at start-up included) can forget.
ALTER TABLE accounts ADD COLUMN change_counter INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER customers_insert_counts AFTER INSERT ON customers
BEGIN
    UPDATE accounts SET change_counter = change_counter + 1 WHERE id = NEW.account_id;
END;

CREATE TRIGGER customers_update_counts AFTER UPDATE ON customers
BEGIN
    UPDATE accounts SET change_counter = change_counter + 1
    WHERE id IN (OLD.account_id, NEW.account_id);
END;

CREATE TRIGGER customers_delete_counts AFTER DELETE ON customers
BEGIN
    UPDATE accounts SET change_counter = change_counter + 1 WHERE id = OLD.account_id;
END;
