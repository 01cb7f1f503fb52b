-- Membership changes and renames appear in the history as system messages
-- (kind 'system', structured `data`, no text), written at the same `seq` as
-- their member.added / member.removed / conversation.updated event. When the
-- infobase made the change there is no acting user: such a line's author is
-- the nil UUID (and `data.by` is absent), so author_id no longer refers to a
-- users row. Users are never deleted (only marked), so nothing else relied
-- on the reference, and every message insert stops paying for its check.
ALTER TABLE messages DROP CONSTRAINT messages_author_id_fkey;
