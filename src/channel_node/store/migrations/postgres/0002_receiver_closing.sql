-- The operator decided to close a channel: the node sells nothing more on it.
ALTER TABLE channels ADD COLUMN receiver_closing BOOLEAN NOT NULL DEFAULT FALSE;
