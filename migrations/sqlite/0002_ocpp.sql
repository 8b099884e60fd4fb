-- OCPP central system: what chargers report, kept whole. In step with ../postgres/0002_ocpp.sql.

ALTER TABLE chargers ADD COLUMN iccid TEXT;
ALTER TABLE chargers ADD COLUMN imsi TEXT;
ALTER TABLE chargers ADD COLUMN meter_type TEXT;
ALTER TABLE chargers ADD COLUMN meter_serial TEXT;
ALTER TABLE chargers ADD COLUMN booted_at BIGINT;
ALTER TABLE chargers ADD COLUMN offline_since BIGINT;
-- Per-model leniency, e.g. accepting enum values or field lengths outside the schema (see server/src/ocpp/quirks.rs).
ALTER TABLE chargers ADD COLUMN lenient BIGINT NOT NULL DEFAULT 0 CHECK (lenient IN (0, 1));

CREATE TABLE charger_boots (
    id            INTEGER PRIMARY KEY,
    charger_id    TEXT    NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    received_at   BIGINT  NOT NULL,
    ocpp_version  TEXT    NOT NULL,
    payload       TEXT    NOT NULL
);
CREATE INDEX charger_boots_by_charger ON charger_boots (charger_id, received_at);

CREATE TABLE connector_status_events (
    id              INTEGER PRIMARY KEY,
    charger_id      TEXT    NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    connector_no    BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    error_code      TEXT    NOT NULL DEFAULT '',
    info            TEXT    NOT NULL DEFAULT '',
    charger_time    BIGINT,
    received_at     BIGINT  NOT NULL
);
CREATE INDEX connector_status_by_charger ON connector_status_events (charger_id, connector_no, received_at);

CREATE TABLE id_tokens (
    token        TEXT    PRIMARY KEY,
    status       TEXT    NOT NULL CHECK (status IN ('accepted', 'blocked')),
    expires_at   BIGINT,
    note         TEXT    NOT NULL DEFAULT '',
    created_at   BIGINT  NOT NULL
);
-- Id tags are CiString (OCPP 1.6 §7.12, 2.0.1 identifierString): compared without regard to case.
CREATE UNIQUE INDEX id_tokens_case_insensitive ON id_tokens (lower(token));

CREATE TABLE transactions (
    id                 INTEGER PRIMARY KEY,
    charger_id         TEXT    NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    connector_no       BIGINT  NOT NULL,
    -- 1.6: the id we assigned (our row id); 2.0.1: the station's transactionId.
    ocpp_tx_id         TEXT    NOT NULL,
    id_tag             TEXT    NOT NULL DEFAULT '',
    status             TEXT    NOT NULL CHECK (status IN ('active', 'completed', 'ghost_closed')),
    started_at         BIGINT  NOT NULL,
    started_at_charger TEXT,
    start_received_at  BIGINT  NOT NULL,
    meter_start_wh     BIGINT,
    stopped_at         BIGINT,
    stopped_at_charger TEXT,
    stop_received_at   BIGINT,
    meter_stop_wh      BIGINT,
    stop_reason        TEXT,
    -- Learned from the stop only: a StopTransaction for a transaction we never saw.
    start_unseen       BIGINT  NOT NULL DEFAULT 0 CHECK (start_unseen IN (0, 1)),
    last_seq_no        BIGINT,
    UNIQUE (charger_id, ocpp_tx_id)
);
CREATE INDEX transactions_active ON transactions (charger_id, connector_no, status);
-- A replayed 1.6 StartTransaction (same connector, tag, meter and time) is the same transaction.
CREATE UNIQUE INDEX transactions_replay_key ON transactions (charger_id, connector_no, id_tag, started_at_charger, meter_start_wh);

CREATE TABLE transaction_events (
    transaction_id  BIGINT  NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
    seq_no          BIGINT  NOT NULL,
    event_type      TEXT    NOT NULL,
    trigger_reason  TEXT    NOT NULL,
    offline         BIGINT  NOT NULL DEFAULT 0 CHECK (offline IN (0, 1)),
    charger_time    TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    PRIMARY KEY (transaction_id, seq_no)
);

CREATE TABLE meter_values (
    id              INTEGER PRIMARY KEY,
    charger_id      TEXT    NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    connector_no    BIGINT  NOT NULL,
    transaction_id  BIGINT  REFERENCES transactions (id) ON DELETE SET NULL,
    sampled_at      BIGINT  NOT NULL,
    charger_time    TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    measurand       TEXT    NOT NULL,
    phase           TEXT    NOT NULL DEFAULT '',
    context         TEXT    NOT NULL DEFAULT '',
    location        TEXT    NOT NULL DEFAULT '',
    unit            TEXT    NOT NULL DEFAULT '',
    raw_value       TEXT    NOT NULL,
    -- The value in thousandths of the base unit (Wh, W, A, V, %), exact for what chargers send.
    value_milli     BIGINT
);
CREATE UNIQUE INDEX meter_values_replay_key ON meter_values (charger_id, connector_no, charger_time, measurand, phase, context, location);
CREATE INDEX meter_values_by_transaction ON meter_values (transaction_id, sampled_at);

CREATE TABLE charger_events (
    id            INTEGER PRIMARY KEY,
    charger_id    TEXT    NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    kind          TEXT    NOT NULL,
    status        TEXT    NOT NULL DEFAULT '',
    payload       TEXT    NOT NULL,
    received_at   BIGINT  NOT NULL
);
CREATE INDEX charger_events_by_charger ON charger_events (charger_id, kind, received_at);

CREATE TABLE ocpp_frames (
    id           INTEGER PRIMARY KEY,
    charger_id   TEXT    NOT NULL,
    direction    TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    at           BIGINT  NOT NULL,
    frame        TEXT    NOT NULL
);
CREATE INDEX ocpp_frames_by_charger ON ocpp_frames (charger_id, at);

CREATE TABLE api_tokens (
    token_hash   TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL CHECK (role IN ('operator', 'retailer')),
    retailer_id  BIGINT  REFERENCES retailers (id),
    created_at   BIGINT  NOT NULL,
    CHECK ((role = 'operator' AND retailer_id IS NULL) OR (role = 'retailer' AND retailer_id IS NOT NULL))
);

-- Unknown chargers waiting for an operator (when no site registers them automatically). The
-- password they first presented is kept hashed (trust on first use) and becomes theirs on acceptance.
CREATE TABLE charger_requests (
    charger_id     TEXT    PRIMARY KEY,
    password_hash  TEXT    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'rejected')),
    vendor         TEXT,
    model          TEXT,
    ocpp_version   TEXT,
    first_seen_at  BIGINT  NOT NULL,
    last_seen_at   BIGINT  NOT NULL
);
