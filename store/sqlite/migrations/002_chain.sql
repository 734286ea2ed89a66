-- The hash chain (pam.Event.Chain): each event's hash and its
-- predecessor's, 32 bytes each. Events written before this migration
-- are chained by it, in sequence order.
ALTER TABLE pam_events ADD COLUMN prev_hash BLOB;
ALTER TABLE pam_events ADD COLUMN hash BLOB;

-- Search by type and by outcome: the rare types and outcomes (policy
-- changes, panics) are the ones auditors look for, and without an index
-- each such search scans the whole trail.
CREATE INDEX pam_events_type ON pam_events (type, seq);
CREATE INDEX pam_events_outcome ON pam_events (outcome, seq);
