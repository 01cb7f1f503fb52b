-- The commit notices of migration 5 cost every commit a global lock (NOTIFY
-- serializes committing transactions) and woke every node per commit: in the
-- benchmark, 15 % more PostgreSQL CPU and twice the p99 on two nodes. Nodes
-- now poll the conversations that changed lately instead (an index range
-- scan every `recovery.grace_ms`), which also works through PgBouncer.
DROP TRIGGER IF EXISTS events_notify ON events;
DROP FUNCTION IF EXISTS parley_events_notify();

-- `last_activity` is set with every event (by the group commit at most once
-- a second per conversation), so "changed in the last few seconds" is one
-- range of this index.
CREATE INDEX conversations_activity ON conversations (last_activity);
