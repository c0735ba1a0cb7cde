-- Transactions the node decided to send, durable before they are sent (docs/design.md, "Durable before delivered").
-- A row is `pending` (decided), `sent` (signed; its raw transaction kept so a restart re-sends the
-- very same one), `done` (a confirmed event shows the effect) or `abandoned` (needs an operator).
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    channel_id   BLOB NOT NULL,
    kind         TEXT NOT NULL,      -- 'claim' or 'close'
    amount       TEXT NOT NULL,
    signature    BLOB NOT NULL,
    deadline     INTEGER,            -- chain time by which a defence must be confirmed
    status       TEXT NOT NULL,
    tx_hash      BLOB,
    raw_tx       BLOB,
    nonce        INTEGER,
    max_fee      TEXT,
    priority_fee TEXT,
    sent_at      INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    note         TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- At most one open row per channel and kind: a higher voucher updates the pending row.
CREATE UNIQUE INDEX outbox_open ON outbox (channel_id, kind) WHERE status IN ('pending', 'sent');
CREATE INDEX outbox_status ON outbox (status);
CREATE INDEX channels_closing ON channels (close_deadline) WHERE close_deadline IS NOT NULL AND settled = 0;
