-- What each sent transaction cost (docs/economics.md, "Cost of collection"): SQLite's
-- 0008_outbox_gas.sql. The receipt's gasUsed and effectiveGasPrice (wei per gas, a uint256 like
-- every fee column), recorded by the sender when it sees the row's transaction mined
-- (chain/outbox.py). A claimBatch's gas is shared among its rows (the first row takes the
-- remainder), so the rows' gas adds up to the transaction's. NULL: not mined yet, or sent before.
ALTER TABLE outbox ADD COLUMN gas_used BIGINT;
ALTER TABLE outbox ADD COLUMN gas_price uint256;
