-- Four roles (operator admin and support, retailer admin and viewer), sign-ins that time out when
-- idle, and an append-only audit log. Existing operators become operator admins and retailers
-- retailer admins; everyone signs in again (sessions are rebuilt with their new columns).

CREATE TABLE users_next (
    id             INTEGER PRIMARY KEY,
    email          TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    role           TEXT    NOT NULL
                   CHECK (role IN ('operator_admin', 'operator_support', 'retailer_admin', 'retailer_viewer')),
    retailer_id    BIGINT  REFERENCES retailers (id),
    created_at     BIGINT  NOT NULL,
    CHECK ((role LIKE 'operator_%' AND retailer_id IS NULL) OR (role LIKE 'retailer_%' AND retailer_id IS NOT NULL))
);
INSERT INTO users_next (id, email, password_hash, role, retailer_id, created_at)
    SELECT id, email, password_hash, CASE role WHEN 'operator' THEN 'operator_admin' ELSE 'retailer_admin' END,
           retailer_id, created_at
    FROM users;
DROP TABLE auth_sessions;
DROP TABLE users;
ALTER TABLE users_next RENAME TO users;

CREATE TABLE auth_sessions (
    token_hash    TEXT    PRIMARY KEY,
    user_id       BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at    BIGINT  NOT NULL,
    -- The absolute end: past it the session is over however busy it was.
    expires_at    BIGINT  NOT NULL,
    -- Its last use: a session idle longer than the idle timeout is over.
    last_seen_at  BIGINT  NOT NULL
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

CREATE TABLE api_tokens_next (
    token_hash   TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL
                 CHECK (role IN ('operator_admin', 'operator_support', 'retailer_admin', 'retailer_viewer')),
    retailer_id  BIGINT  REFERENCES retailers (id),
    created_at   BIGINT  NOT NULL,
    CHECK ((role LIKE 'operator_%' AND retailer_id IS NULL) OR (role LIKE 'retailer_%' AND retailer_id IS NOT NULL))
);
INSERT INTO api_tokens_next (token_hash, name, role, retailer_id, created_at)
    SELECT token_hash, name, CASE role WHEN 'operator' THEN 'operator_admin' ELSE 'retailer_admin' END,
           retailer_id, created_at
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_next RENAME TO api_tokens;

-- Every change an operator or a retailer made: who, when, what, from where. Rows are only ever
-- added (the triggers refuse the rest).
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    at           BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    actor_role   TEXT    NOT NULL,
    -- The retailer whose data changed (NULL: the network's own); a retailer admin reads these.
    retailer_id  BIGINT,
    action       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    detail       TEXT    NOT NULL,
    source       TEXT    NOT NULL
);
CREATE INDEX audit_log_retailer ON audit_log (retailer_id, at);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- One-use links a user receives: an invitation to set a first password, or a password reset.
-- Only the token's hash is kept.
CREATE TABLE user_tokens (
    token_hash  TEXT    PRIMARY KEY,
    user_id     BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT    NOT NULL CHECK (purpose IN ('invite', 'reset')),
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id);

-- Each connector's presence code, printed beside its QR code: only a phone that shows it may plan
-- the session there. Filled for existing connectors when the server starts.
ALTER TABLE connectors ADD COLUMN presence_code TEXT;
