-- Amounts are uint256-safe: decimal TEXT, compared in Python, never as SQLite numbers.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per channel this node accepts vouchers on. `version` is the compare-and-set counter.
CREATE TABLE channels (
    channel_id     BLOB PRIMARY KEY,
    payer          BLOB NOT NULL,
    signer         BLOB NOT NULL,
    receiver       BLOB NOT NULL,
    token          BLOB NOT NULL,
    close_delay    INTEGER NOT NULL,
    salt           TEXT NOT NULL,
    deposited      TEXT NOT NULL,
    claimed        TEXT NOT NULL,
    ceiling        TEXT NOT NULL,   -- best voucher amount
    signature      BLOB NOT NULL,   -- its signature
    charged        TEXT NOT NULL,
    close_deadline INTEGER,
    settled        INTEGER NOT NULL DEFAULT 0,
    version        INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;

-- Every charge, in order: what was delivered for what was paid.
CREATE TABLE charges (
    channel_id BLOB NOT NULL,
    seq        INTEGER NOT NULL,   -- the channel's version after this charge
    resource   TEXT NOT NULL,
    amount     TEXT NOT NULL,
    payment_id TEXT,
    at         INTEGER NOT NULL,
    PRIMARY KEY (channel_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX charges_payment_id ON charges (channel_id, payment_id) WHERE payment_id IS NOT NULL;

-- Resources bought once per channel (articles): re-fetching them is free.
CREATE TABLE unlocks (
    channel_id BLOB NOT NULL,
    resource   TEXT NOT NULL,
    PRIMARY KEY (channel_id, resource)
) WITHOUT ROWID;
