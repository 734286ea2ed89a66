-- The hash chain (pam.Event.Chain): each event's hash and its
-- predecessor's. Commit computes them in the database under the
-- pam_meta row lock, from the head kept in pam_meta. Events written
-- before this migration are chained by it, in sequence order.
ALTER TABLE pam_events ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;
ALTER TABLE pam_meta
	ADD COLUMN prev_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
	ADD COLUMN head_hash bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000';

-- Search by type and by outcome: the rare types and outcomes (policy
-- changes, panics) are the ones auditors look for, and without an index
-- each such search scans the whole trail.
CREATE INDEX pam_events_type ON pam_events (type, seq);
CREATE INDEX pam_events_outcome ON pam_events (outcome, seq);
