-- Who shares a screen in a call (told to the members with call.updated).
ALTER TABLE call_participants ADD COLUMN screen boolean NOT NULL DEFAULT false;
