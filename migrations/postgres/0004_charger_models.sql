-- Per-model OCPP settings, for what a central system cannot detect from the messages themselves.
-- In step with ../sqlite/0004_charger_models.sql.
CREATE TABLE charger_models (
    vendor        TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    -- Accept values outside the schema (lengths; misspelt enum values; meter samples of unknown kinds are dropped), with a warning.
    lenient       BIGINT  NOT NULL DEFAULT 0 CHECK (lenient IN (0, 1)),
    -- OCPP 1.6 meterStart / meterStop sent in kWh although the schema says Wh.
    meter_in_kwh  BIGINT  NOT NULL DEFAULT 0 CHECK (meter_in_kwh IN (0, 1)),
    -- Its energy register restarts at 0 with each transaction (most count over the meter's lifetime).
    session_register BIGINT NOT NULL DEFAULT 0 CHECK (session_register IN (0, 1)),
    note          TEXT    NOT NULL DEFAULT '',
    updated_at    BIGINT  NOT NULL,
    PRIMARY KEY (vendor, model)
);
