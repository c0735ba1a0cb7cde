-- Settlement claims what was charged, not the voucher ceiling (docs/contract.md).
-- The channel's receiver authorizer is part of its configuration (and of its id); channels stored
-- before it existed have none (address(0)).
ALTER TABLE channels ADD COLUMN receiver_authorizer BYTEA NOT NULL DEFAULT '\x0000000000000000000000000000000000000000'::bytea;
-- An outbox row's `amount` is the total to claim; `voucher_amount` is the voucher that authorises
-- it (what `signature` covers). NULL in rows written before this migration: they claimed the voucher.
ALTER TABLE outbox ADD COLUMN voucher_amount uint256;
