-- How long the store meter may send one and the same reading before the balancer stops believing it
-- (a gateway that lost its meter and repeats the last value), in milliseconds; 0: never (a meter of
-- whole amps on a store that truly is that still). In step with ../sqlite/0012_store_meter_frozen_after.sql.
ALTER TABLE sites ADD COLUMN store_meter_frozen_after_ms BIGINT NOT NULL DEFAULT 900000 CHECK (store_meter_frozen_after_ms >= 0);
