-- The notification outbox: messages written in the same commit as the
-- transition that causes them, delivered at least once. lease_owner and
-- lease_until reserve a message for the Manager delivering it.
CREATE TABLE pam_outbox (
	id           TEXT PRIMARY KEY,
	request_id   TEXT NOT NULL,
	state        TEXT NOT NULL,
	next_attempt INTEGER NOT NULL,
	lease_owner  TEXT NOT NULL DEFAULT '',
	lease_until  INTEGER NOT NULL DEFAULT 0,
	version      INTEGER NOT NULL,
	data         TEXT NOT NULL
) STRICT;
CREATE INDEX pam_outbox_due ON pam_outbox (next_attempt, id) WHERE state = 'pending';
CREATE INDEX pam_outbox_request ON pam_outbox (request_id);
