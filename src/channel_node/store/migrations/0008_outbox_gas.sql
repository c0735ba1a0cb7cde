-- What each sent transaction cost (docs/economics.md, "Cost of collection"): the receipt's gasUsed
-- and effectiveGasPrice (wei per gas, as decimal text like every fee column), recorded by the sender
-- when it sees the row's transaction mined (chain/outbox.py). A claimBatch's gas is shared among its
-- rows (the first row takes the remainder), so the rows' gas adds up to the transaction's.
-- NULL: not mined yet, or sent before this migration.
ALTER TABLE outbox ADD COLUMN gas_used INTEGER;
ALTER TABLE outbox ADD COLUMN gas_price TEXT;
