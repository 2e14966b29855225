-- An account's history and the dashboard ask for events between two times.
-- Ids grow with time, so a time range becomes an id range with two lookups in
-- this index, and the (account, id) and (type, id) indexes do the rest.
CREATE INDEX events_time ON events (time);
