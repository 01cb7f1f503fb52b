-- A conversation's description, changed with its title by conversation.update.
ALTER TABLE conversations ADD COLUMN description text NOT NULL DEFAULT '';
