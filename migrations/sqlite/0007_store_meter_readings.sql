-- The site meter's readings of the store's own load, kept a week, so the balancer learns how far the
-- store rises between readings from its history after a restart too. In step with ../postgres/0007_store_meter_readings.sql.
CREATE TABLE store_meter_readings (
    site_id      BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    -- When it was measured: UTC milliseconds.
    measured_at  BIGINT NOT NULL,
    -- Tenths of an amp per site phase.
    l1_da        BIGINT NOT NULL CHECK (l1_da >= 0),
    l2_da        BIGINT NOT NULL CHECK (l2_da >= 0),
    l3_da        BIGINT NOT NULL CHECK (l3_da >= 0)
);
CREATE INDEX store_meter_readings_by_site ON store_meter_readings (site_id, measured_at);
