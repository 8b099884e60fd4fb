-- A driver's plan for a charge, stated on the phone after scanning a connector's QR code: when the
-- car leaves (UTC milliseconds) and how much energy it wants (Wh). Stated before the car starts, it
-- waits (until expires_at_ms) for the next transaction on that connector; stated just after, it joins
-- the running one. The phone holds a random token in a cookie; only its SHA-256 is kept here, and
-- only that phone may change the plan. In step with ../postgres/0010_driver_plans.sql.
CREATE TABLE driver_plans (
    id              INTEGER PRIMARY KEY,
    token_hash      TEXT    NOT NULL UNIQUE,
    charger_id      TEXT    NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    connector_no    BIGINT  NOT NULL,
    transaction_id  BIGINT  UNIQUE REFERENCES transactions (id) ON DELETE CASCADE,
    departure_at_ms BIGINT,
    energy_need_wh  BIGINT  CHECK (energy_need_wh > 0),
    created_at_ms   BIGINT  NOT NULL,
    expires_at_ms   BIGINT  NOT NULL
);
CREATE INDEX driver_plans_waiting ON driver_plans (charger_id, connector_no, expires_at_ms);
