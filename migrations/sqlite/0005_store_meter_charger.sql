-- A site whose store meter is wired to a charger: MeterValues on that charger's connector (EVSE) 0,
-- Current.Import per phase, are the store's own load. In step with ../postgres/0005_store_meter_charger.sql.
ALTER TABLE sites ADD COLUMN store_meter_charger_id TEXT;
