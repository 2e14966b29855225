-- Whether the device was behind NAT when it registered (its top Via did not
-- match the address the REGISTER came from): requests then go to that source
-- address; otherwise to the Contact, which may name another host or port
-- (a registration made on behalf of a device). Old rows: NAT, the safe guess.
ALTER TABLE bindings ADD COLUMN nat INTEGER NOT NULL DEFAULT 1;
