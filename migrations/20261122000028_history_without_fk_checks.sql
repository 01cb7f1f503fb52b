-- Every event and message row is written after its conversation's row was
-- locked (`FOR UPDATE` in parley_post_batch, the `last_seq` update on every
-- other path), so the foreign keys from `events` and `messages` to
-- `conversations` only re-checked, per inserted row, a row the writer
-- already held: two `SELECT … FOR KEY SHARE` through SPI per message on the
-- send path (measured with the JIT change: docs/benchmarks.md, session 11).
--
-- What the keys gave besides is kept by a trigger: deleting a conversation
-- (Parley never does; an operator might) still removes its history. The
-- delete waits for a writer holding the conversation's row, as before.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_conversation_id_fkey;
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_conversation_id_fkey;

CREATE FUNCTION conversation_history_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM events WHERE conversation_id = OLD.id;
    -- Reactions, actions and file links of these messages go by their own
    -- keys (ON DELETE CASCADE / SET NULL).
    DELETE FROM messages WHERE conversation_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER conversation_history_deleted AFTER DELETE ON conversations
    FOR EACH ROW EXECUTE FUNCTION conversation_history_deleted();
