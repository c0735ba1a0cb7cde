-- x402 `exact` sales (docs/protocol.md, "The `exact` scheme (node)"): one row per EIP-3009
-- authorization the node took, keyed by its identity on chain (token, payer, nonce). A nonce is held
-- from the moment its row is recorded and never released: a second payment with it is either the
-- same request retried (it waits for the same transfer) or `authorization_used`. The row and its
-- outbox row (kind 'transfer_authorization', channel_id = auth_key) are written in one transaction.
CREATE TABLE exact_payments (
    id           INTEGER PRIMARY KEY,
    auth_key     BLOB NOT NULL UNIQUE,  -- keccak256(token || payer || nonce): the outbox row's channel_id
    token        BLOB NOT NULL,
    payer        BLOB NOT NULL,
    nonce        BLOB NOT NULL,
    receiver     BLOB NOT NULL,
    value        TEXT NOT NULL,         -- uint256 as decimal text
    valid_after  TEXT NOT NULL,
    valid_before TEXT NOT NULL,
    signature    BLOB NOT NULL,
    resource     TEXT NOT NULL,
    price        TEXT NOT NULL,
    status       TEXT NOT NULL,         -- held | confirmed | failed | expired
    tx_hash      BLOB,
    block_number INTEGER,
    gas_used     INTEGER,
    error        TEXT,
    served       INTEGER NOT NULL DEFAULT 0,  -- the one request it bought has been answered
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (token, payer, nonce)
);
CREATE INDEX exact_payments_held ON exact_payments (status) WHERE status = 'held';
