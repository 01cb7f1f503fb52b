-- A conversation's picture: an image file uploaded to it, set (or removed)
-- by conversation.update. The file's retention removes the picture with it.
ALTER TABLE conversations ADD COLUMN picture uuid REFERENCES files (id) ON DELETE SET NULL;
