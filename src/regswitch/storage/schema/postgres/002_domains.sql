-- The SIP domains the switch serves, as data (the console adds and removes
-- them live); the --domain configuration seeds it at every start.
CREATE TABLE domains (
    name       TEXT PRIMARY KEY,
    created_at DOUBLE PRECISION NOT NULL
);
