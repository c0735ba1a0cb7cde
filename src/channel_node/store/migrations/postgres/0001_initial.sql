-- PostgreSQL's schema, migration by migration the same as SQLite's (store/migrations/NNNN_*.sql):
-- the same number is the same change. Amounts are uint256: NUMERIC(78,0) through the `uint256`
-- domain (0 <= x < 2^256, never a float); unix seconds and block numbers are BIGINT.
CREATE DOMAIN uint256 AS NUMERIC(78, 0)
    CHECK (VALUE >= 0 AND VALUE < 115792089237316195423570985008687907853269984665640564039457584007913129639936);

-- The pin (chain_id, contract, receiver, as text) and the watcher's cursor.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per channel this node accepts vouchers on. `version` is the compare-and-set counter.
CREATE TABLE channels (
    channel_id     BYTEA PRIMARY KEY CHECK (octet_length(channel_id) = 32),
    payer          BYTEA NOT NULL,
    signer         BYTEA NOT NULL,
    receiver       BYTEA NOT NULL,
    token          BYTEA NOT NULL,
    close_delay    BIGINT NOT NULL,
    salt           uint256 NOT NULL,
    deposited      uint256 NOT NULL,
    claimed        uint256 NOT NULL,
    ceiling        uint256 NOT NULL,   -- best voucher amount
    signature      BYTEA NOT NULL,     -- its signature
    charged        uint256 NOT NULL,
    close_deadline BIGINT,
    settled        BOOLEAN NOT NULL DEFAULT FALSE,
    version        BIGINT NOT NULL CHECK (version > 0),
    updated_at     BIGINT NOT NULL
);

-- Every charge, in order: what was delivered for what was paid.
CREATE TABLE charges (
    channel_id BYTEA NOT NULL,
    seq        BIGINT NOT NULL,   -- the channel's version after this charge
    resource   TEXT NOT NULL,
    amount     uint256 NOT NULL,
    payment_id TEXT,
    at         BIGINT NOT NULL,
    PRIMARY KEY (channel_id, seq)
);
-- A payment identifier is honoured once per channel, whichever process recorded it.
CREATE UNIQUE INDEX charges_payment_id ON charges (channel_id, payment_id) WHERE payment_id IS NOT NULL;

-- Resources bought once per channel (articles): re-fetching them is free.
CREATE TABLE unlocks (
    channel_id BYTEA NOT NULL,
    resource   TEXT NOT NULL,
    PRIMARY KEY (channel_id, resource)
);
