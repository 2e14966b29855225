-- regswitch PostgreSQL schema, version 1 (the SQLite schema's tables and
-- column names, with native types). Applied by storage/pg_schema.py in one
-- transaction under an advisory lock, then recorded in schema_version.
-- Never edit a released migration: add 002_*.sql instead. The cdrs table is
-- an interface read by billing systems (docs/storage.md): a migration may add
-- columns to it but never renames or drops a documented one.
-- Times are wall-clock epoch seconds (double precision), as the API shows them.

CREATE TABLE accounts (
    aor                TEXT PRIMARY KEY,          -- user@domain, domain lower-case
    username           TEXT NOT NULL,
    domain             TEXT NOT NULL,
    ha1_md5            TEXT NOT NULL,
    ha1_sha256         TEXT NOT NULL,
    allowed_networks   TEXT[] NOT NULL DEFAULT '{}',
    max_contacts       INTEGER NOT NULL DEFAULT 1,
    register_replace   TEXT NOT NULL DEFAULT 'inherit'
                       CHECK (register_replace IN ('inherit', 'on', 'off')),
    replace_keep_calls TEXT NOT NULL DEFAULT 'inherit'
                       CHECK (replace_keep_calls IN ('inherit', 'on', 'off')),
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    created_at         DOUBLE PRECISION NOT NULL,
    updated_at         DOUBLE PRECISION NOT NULL
);

CREATE TABLE params (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE bindings (
    id            TEXT PRIMARY KEY,
    aor           TEXT NOT NULL,
    contact       TEXT NOT NULL,
    transport     TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    source_port   INTEGER NOT NULL,
    local_ip      TEXT NOT NULL,
    local_port    INTEGER NOT NULL,
    conn_id       BIGINT NOT NULL,
    call_id       TEXT NOT NULL,
    cseq          BIGINT NOT NULL,
    expires_at    DOUBLE PRECISION NOT NULL,
    instance      TEXT,
    reg_id        TEXT,
    user_agent    TEXT,
    path          TEXT[] NOT NULL DEFAULT '{}',   -- Path header values, in order
    registered_at DOUBLE PRECISION NOT NULL,
    refreshed_at  DOUBLE PRECISION NOT NULL,
    reachable     BOOLEAN NOT NULL DEFAULT TRUE,
    node          TEXT NOT NULL DEFAULT '',
    nat           BOOLEAN NOT NULL DEFAULT TRUE
);

CREATE INDEX bindings_aor ON bindings (aor);

-- Ids are assigned by the process (at add() time, for the live stream).
-- details is json, not jsonb: the text is kept as written, so the API shows
-- the keys in the order the event was built (jsonb would reorder them).
CREATE TABLE events (
    id      BIGINT PRIMARY KEY,
    time    DOUBLE PRECISION NOT NULL,
    type    TEXT NOT NULL,
    account TEXT,
    source  TEXT,
    details JSON NOT NULL DEFAULT '{}'
);

CREATE INDEX events_type ON events (type, id);
CREATE INDEX events_account ON events (account, id);
CREATE INDEX events_time ON events (time);

-- seq orders CDRs with the same start (newest written last); a replaced
-- CDR takes a new seq, as a new row would.
CREATE TABLE cdrs (
    id               TEXT PRIMARY KEY,
    seq              BIGSERIAL NOT NULL,
    caller           TEXT NOT NULL,
    callee           TEXT NOT NULL,
    caller_contact   TEXT,
    callee_contact   TEXT,
    caller_source    TEXT,
    callee_source    TEXT,
    a_call_id        TEXT NOT NULL,
    b_call_id        TEXT,
    start_time       DOUBLE PRECISION NOT NULL,
    answer_time      DOUBLE PRECISION,
    end_time         DOUBLE PRECISION NOT NULL,
    billable_seconds INTEGER NOT NULL,
    final_code       INTEGER NOT NULL,
    end_reason       TEXT NOT NULL,
    end_direction    TEXT NOT NULL
);

-- One index per API filter (GET /api/cdrs?account=&reason=&since=&until=),
-- each ending in the sort order so a page is read straight off the index.
CREATE INDEX cdrs_start ON cdrs (start_time, seq);
CREATE INDEX cdrs_caller ON cdrs (caller, start_time, seq);
CREATE INDEX cdrs_callee ON cdrs (callee, start_time, seq);
CREATE INDEX cdrs_reason ON cdrs (end_reason, start_time, seq);
