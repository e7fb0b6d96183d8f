-- Search: every word a customer can be found by (folded to lower case
-- without accents, computed by the server), and the email without case for
-- the exact email filter. The server fills both for existing customers at
-- start, when the recorded search version differs from its own. Words
-- compare as bytes ("C"), as the prefix ranges the server asks for expect.
ALTER TABLE customers ADD COLUMN email_folded text COLLATE "C" NOT NULL DEFAULT '';
-- With the order columns, one email's customers come out of the index in list
-- order, so the filter never sorts or scans.
CREATE INDEX customers_by_email ON customers (account_id, email_folded, sort_key, id);

CREATE TABLE customer_words (
    account_id   bigint NOT NULL,
    word         text COLLATE "C" NOT NULL,
    customer_id  bigint NOT NULL,
    PRIMARY KEY (account_id, word, customer_id)
);
CREATE INDEX customer_words_by_customer ON customer_words (customer_id);
