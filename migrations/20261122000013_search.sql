-- Full-text search of messages in PostgreSQL (no extra search cluster). The
-- `russian` configuration stems Cyrillic words with the Russian Snowball
-- stemmer and Latin ones with the English one, so one vector serves both
-- languages; ё is folded to е first ("счёт" and "счета" meet). A generated
-- column: edits and deletions (text emptied) are reflected in the same
-- statement.
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('russian'::regconfig, translate(text, 'ёЁ', 'еЕ'))) STORED;
CREATE INDEX messages_search ON messages USING gin (search);
