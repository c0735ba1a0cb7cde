-- Caps and passes (docs/protocol.md, "Caps and passes"): SQLite's 0007_spending.sql. A charge's cap
-- group is the cap it counts toward (its amount may be 0: a read the cap made free, still recorded
-- with its unlock); pass_name with pass_until is a pass bought, valid in [at, pass_until) (unix
-- seconds); pass_name alone is the pass that covered a read. NULL in rows written before: no cap, no pass.
ALTER TABLE charges ADD COLUMN cap_group TEXT;
ALTER TABLE charges ADD COLUMN pass_name TEXT;
ALTER TABLE charges ADD COLUMN pass_until BIGINT;
-- "Paid in this group since T" and "which passes are valid now", in the payment's own lookup. Only
-- charges above 0 count toward a cap, so only they are indexed (reads made free past the cap add
-- nothing to scan), with their amount (the sum can be read from the index alone).
CREATE INDEX charges_cap_group ON charges (channel_id, cap_group, at, amount) WHERE cap_group IS NOT NULL AND amount <> 0;
CREATE INDEX charges_pass ON charges (channel_id, pass_name, pass_until) WHERE pass_until IS NOT NULL;
