-- Conversations belong to the API key (tenant) that created them through the
-- server; other keys see none of them. NULL: started through the Python API or
-- the CLI, as every conversation before this version was.

ALTER TABLE conversations ADD COLUMN owner text;
