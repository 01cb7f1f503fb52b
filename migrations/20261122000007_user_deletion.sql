-- Deleting a user keeps its row (messages and dialogs still name their
-- author) but frees its external id, clears its contact fields and hides it
-- from the infobase's API.
ALTER TABLE users ADD COLUMN deleted_at timestamptz;
