-- Conversations and their turns, memories, personality traits and the sync's text
-- conversations: what one Coda instance kept in SQLite, now shared.

CREATE TABLE conversations (
    id text PRIMARY KEY,
    started_at double precision NOT NULL,
    last_activity double precision NOT NULL,
    ended_at double precision,
    current_mode text,
    metrics jsonb NOT NULL DEFAULT '{}',
    summary text NOT NULL DEFAULT '',
    turn_count integer NOT NULL DEFAULT 0
);

-- A turn is written with its conversation's update in one transaction; its index
-- is the conversation's turn_count at that moment, so indexes run 1..turn_count.
CREATE TABLE turns (
    conversation_id text NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    turn_index integer NOT NULL,
    message_id text,
    user_text text NOT NULL,
    assistant_text text NOT NULL,
    mode text NOT NULL,
    timestamp double precision NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (conversation_id, turn_index)
);
CREATE UNIQUE INDEX turns_by_message ON turns (conversation_id, message_id)
    WHERE message_id IS NOT NULL;

-- Every change to a scope's memories takes a version from this sequence, so an
-- instance can bring its in-memory index up to date with the rows changed since.
CREATE SEQUENCE memory_versions;

CREATE TABLE memories (
    id bigserial PRIMARY KEY,
    scope text NOT NULL,
    kind text NOT NULL,
    text text NOT NULL,
    embedding bytea NOT NULL,
    question_embeddings bytea,
    questions text NOT NULL DEFAULT '',
    importance double precision NOT NULL DEFAULT 0.5,
    mentions integer NOT NULL DEFAULT 1,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    fact_key text,
    subject text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'current',
    superseded_at double precision,
    version bigint NOT NULL DEFAULT nextval('memory_versions')
);
CREATE INDEX memories_by_version ON memories (scope, version);
CREATE INDEX memories_by_key ON memories (scope, fact_key, status);

-- Forgotten memories leave only their id, so other instances drop them too.
CREATE TABLE memory_tombstones (
    scope text NOT NULL,
    id bigint NOT NULL,
    version bigint NOT NULL DEFAULT nextval('memory_versions')
);
CREATE INDEX memory_tombstones_by_version ON memory_tombstones (scope, version);

CREATE TABLE personality (
    scope text PRIMARY KEY,
    traits jsonb NOT NULL,
    updated_at double precision NOT NULL
);

CREATE TABLE text_messages (
    conversation_id text NOT NULL,
    message_id text NOT NULL,
    seq bigserial,
    role text NOT NULL CHECK (role IN ('user', 'assistant')),
    content text NOT NULL,
    source text NOT NULL CHECK (source IN ('voice', 'text')),
    updated_by text NOT NULL CHECK (updated_by IN ('voice', 'text')),
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    version integer NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX text_messages_by_order ON text_messages (conversation_id, created_at, seq);
