-- Foundation schema. Kept in step with ../postgres/0001_foundation.sql: same tables, columns and
-- constraints; only the identity columns differ. Times are UTC epoch milliseconds.

CREATE TABLE retailers (
    id          INTEGER PRIMARY KEY,
    slug        TEXT    NOT NULL UNIQUE,
    name        TEXT    NOT NULL,
    theme       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    email          TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL CHECK (role IN ('operator', 'retailer')),
    retailer_id    BIGINT  REFERENCES retailers (id),
    created_at     BIGINT  NOT NULL,
    CHECK ((role = 'operator' AND retailer_id IS NULL) OR (role = 'retailer' AND retailer_id IS NOT NULL))
);

CREATE TABLE auth_sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);

CREATE TABLE tariffs (
    id                 INTEGER PRIMARY KEY,
    currency           TEXT    NOT NULL CHECK (length(currency) = 3),
    per_kwh_minor      BIGINT  NOT NULL CHECK (per_kwh_minor >= 0),
    session_fee_minor  BIGINT  NOT NULL CHECK (session_fee_minor >= 0)
);

CREATE TABLE sites (
    id                INTEGER PRIMARY KEY,
    retailer_id       BIGINT  NOT NULL REFERENCES retailers (id),
    name              TEXT    NOT NULL,
    address           TEXT    NOT NULL,
    timezone          TEXT    NOT NULL,
    tariff_id         BIGINT  NOT NULL REFERENCES tariffs (id),
    grid_limit_l1_da  BIGINT  NOT NULL CHECK (grid_limit_l1_da > 0),
    grid_limit_l2_da  BIGINT  NOT NULL CHECK (grid_limit_l2_da > 0),
    grid_limit_l3_da  BIGINT  NOT NULL CHECK (grid_limit_l3_da > 0),
    auto_register     BIGINT  NOT NULL DEFAULT 0 CHECK (auto_register IN (0, 1)),
    free_vend         BIGINT  NOT NULL DEFAULT 0 CHECK (free_vend IN (0, 1)),
    created_at        BIGINT  NOT NULL
);
CREATE INDEX sites_by_retailer ON sites (retailer_id);

CREATE TABLE chargers (
    id             TEXT    PRIMARY KEY,
    site_id        BIGINT  NOT NULL REFERENCES sites (id),
    password_hash  TEXT,
    registration   TEXT    NOT NULL CHECK (registration IN ('accepted', 'pending', 'rejected')),
    vendor         TEXT,
    model          TEXT,
    firmware       TEXT,
    serial         TEXT,
    ocpp_version   TEXT,
    online         BIGINT  NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
    last_seen_at   BIGINT,
    created_at     BIGINT  NOT NULL
);
CREATE INDEX chargers_by_site ON chargers (site_id);

CREATE TABLE connectors (
    charger_id     TEXT    NOT NULL REFERENCES chargers (id) ON DELETE CASCADE,
    connector_no   BIGINT  NOT NULL CHECK (connector_no > 0),
    max_current_a  BIGINT  NOT NULL CHECK (max_current_a > 0),
    phases         BIGINT  NOT NULL CHECK (phases IN (1, 3)),
    max_power_w    BIGINT  NOT NULL CHECK (max_power_w > 0),
    status         TEXT    NOT NULL,
    status_at      BIGINT,
    PRIMARY KEY (charger_id, connector_no)
);
