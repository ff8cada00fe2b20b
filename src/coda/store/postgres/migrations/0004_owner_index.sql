-- A key lists its conversations, most recently active first (GET /v1/conversations).

CREATE INDEX conversations_by_owner ON conversations (owner, last_activity DESC);
