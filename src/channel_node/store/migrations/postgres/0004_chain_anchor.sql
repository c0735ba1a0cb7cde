-- The block (number and hash) a channel's chain figures were read at by a direct read that the
-- watcher's cursor has not yet covered (docs/security.md, "Reorganisations"). NULL: the figures
-- come from logs at or below the cursor, whose hash the watcher checks at every poll.
ALTER TABLE channels ADD COLUMN chain_block BIGINT;
ALTER TABLE channels ADD COLUMN chain_hash BYTEA;
CREATE INDEX channels_anchored ON channels (chain_block) WHERE chain_block IS NOT NULL;
