-- Group calls through a media server: the call's room (Janus VideoRoom:
-- server, room id, pin), destroyed when the call ends.
ALTER TABLE calls ADD COLUMN room jsonb;
