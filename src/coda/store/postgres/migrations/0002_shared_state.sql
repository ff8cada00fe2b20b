-- What several instances share besides the data: who is alive, their live
-- sessions, the rate limits' token buckets, and sync events for the others.

CREATE TABLE instances (
    id text PRIMARY KEY,
    host text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE live_sessions (
    id text PRIMARY KEY,
    instance_id text NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    key_digest text NOT NULL,
    conversation_id text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_sessions_by_key ON live_sessions (key_digest);

CREATE TABLE rate_buckets (
    key_digest text PRIMARY KEY,
    tokens double precision NOT NULL,
    updated_at double precision NOT NULL
);

-- One token from the key's bucket (``per_minute`` tokens, refilled continuously),
-- atomically across instances. Returns the tokens left (>= 0) when one was taken,
-- else minus the seconds until one is back. ``now_s`` is epoch seconds; NULL takes
-- the database's clock, the one clock every instance agrees on.
CREATE FUNCTION coda_take_token(key text, per_minute double precision, now_s double precision)
RETURNS double precision LANGUAGE plpgsql AS $$
DECLARE
    at double precision := COALESCE(now_s, extract(epoch FROM clock_timestamp()));
    have double precision;
BEGIN
    INSERT INTO rate_buckets VALUES (key, per_minute, at) ON CONFLICT (key_digest) DO NOTHING;
    SELECT LEAST(per_minute, b.tokens + GREATEST(0, at - b.updated_at) * per_minute / 60.0)
        INTO have FROM rate_buckets b WHERE b.key_digest = key FOR UPDATE;
    IF have < 1 THEN
        RETURN -((1 - have) * 60.0 / per_minute);
    END IF;
    UPDATE rate_buckets SET tokens = have - 1, updated_at = GREATEST(updated_at, at)
        WHERE key_digest = key;
    RETURN have - 1;
END $$;

CREATE TABLE sync_events (
    id bigserial PRIMARY KEY,
    origin text NOT NULL,
    conversation_id text NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    timestamp double precision NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
