-- Search: every word a customer can be found by (folded to lower case
-- without accents, computed by the server), and the email without case for
-- the exact email filter. The server fills both for existing customers at
-- start, when the recorded search version differs from its own.
ALTER TABLE customers ADD COLUMN email_folded TEXT NOT NULL DEFAULT '';
-- With the order columns, one email's customers come out of the index in list
-- order, so the filter never sorts or scans.
CREATE INDEX customers_by_email ON customers (account_id, email_folded, sort_key, id);

CREATE TABLE customer_words (
    account_id   INTEGER NOT NULL,
    word         TEXT    NOT NULL,
    customer_id  INTEGER NOT NULL,
    PRIMARY KEY (account_id, word, customer_id)
) WITHOUT ROWID;
CREATE INDEX customer_words_by_customer ON customer_words (customer_id);
