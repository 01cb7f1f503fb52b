-- Replies (a message of the same conversation) and @mentions (members).
ALTER TABLE messages ADD COLUMN reply_to uuid;
ALTER TABLE messages ADD COLUMN mentions uuid[];
