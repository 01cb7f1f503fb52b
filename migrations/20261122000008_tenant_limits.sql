-- Counts behind the per-infobase and per-address limits (issue 13): live
-- tokens of an infobase, and registration codes requested from an address
-- in the last hour (a limit every node sees alike).
CREATE INDEX session_tokens_infobase_live ON session_tokens (infobase_id, expires_at)
    WHERE revoked_at IS NULL;
CREATE INDEX registration_codes_client_created ON registration_codes (client_addr, created_at DESC);
