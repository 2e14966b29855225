-- regswitch SQLite schema, version 1.
-- Applied by storage/sqlite.py inside one transaction, then recorded in
-- schema_version. Never edit a released migration: add 002_*.sql instead.
-- Column names avoid SQL keywords (user, start, end) so the same names can
-- serve the PostgreSQL schema.

CREATE TABLE accounts (
    aor                TEXT PRIMARY KEY,          -- user@domain, domain lower-case
    username           TEXT NOT NULL,
    domain             TEXT NOT NULL,
    ha1_md5            TEXT NOT NULL,
    ha1_sha256         TEXT NOT NULL,
    allowed_networks   TEXT NOT NULL DEFAULT '[]', -- JSON array of CIDR strings
    max_contacts       INTEGER NOT NULL DEFAULT 1,
    register_replace   TEXT NOT NULL DEFAULT 'inherit'
                       CHECK (register_replace IN ('inherit', 'on', 'off')),
    replace_keep_calls TEXT NOT NULL DEFAULT 'inherit'
                       CHECK (replace_keep_calls IN ('inherit', 'on', 'off')),
    enabled            INTEGER NOT NULL DEFAULT 1,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE params (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE bindings (
    id            TEXT PRIMARY KEY,
    aor           TEXT NOT NULL,
    contact       TEXT NOT NULL,
    transport     TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    source_port   INTEGER NOT NULL,
    local_ip      TEXT NOT NULL,
    local_port    INTEGER NOT NULL,
    conn_id       INTEGER NOT NULL,
    call_id       TEXT NOT NULL,
    cseq          INTEGER NOT NULL,
    expires_at    REAL NOT NULL,
    instance      TEXT,
    reg_id        TEXT,
    user_agent    TEXT,
    path          TEXT NOT NULL DEFAULT '[]',     -- JSON array of Path header values
    registered_at REAL NOT NULL,
    refreshed_at  REAL NOT NULL,
    reachable     INTEGER NOT NULL DEFAULT 1,
    node          TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

CREATE INDEX bindings_aor ON bindings (aor);

-- Ids are assigned by the process (at add() time, for the live stream), not
-- by SQLite; INTEGER PRIMARY KEY keeps them the rowid.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    time    REAL NOT NULL,
    type    TEXT NOT NULL,
    account TEXT,
    source  TEXT,
    details TEXT NOT NULL DEFAULT '{}'            -- JSON object
);

CREATE INDEX events_type ON events (type, id);
CREATE INDEX events_account ON events (account, id);

CREATE TABLE cdrs (
    id               TEXT NOT NULL UNIQUE,
    caller           TEXT NOT NULL,
    callee           TEXT NOT NULL,
    caller_contact   TEXT,
    callee_contact   TEXT,
    caller_source    TEXT,
    callee_source    TEXT,
    a_call_id        TEXT NOT NULL,
    b_call_id        TEXT,
    start_time       REAL NOT NULL,
    answer_time      REAL,
    end_time         REAL NOT NULL,
    billable_seconds INTEGER NOT NULL,
    final_code       INTEGER NOT NULL,
    end_reason       TEXT NOT NULL,
    end_direction    TEXT NOT NULL
);

CREATE INDEX cdrs_start ON cdrs (start_time);
CREATE INDEX cdrs_caller ON cdrs (caller, start_time);
CREATE INDEX cdrs_callee ON cdrs (callee, start_time);
CREATE INDEX cdrs_reason ON cdrs (end_reason, start_time);
