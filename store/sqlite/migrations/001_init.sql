-- Policies: the current version of each, deleted ones kept as tombstones.
CREATE TABLE pam_policies (
	id       TEXT PRIMARY KEY,
	version  INTEGER NOT NULL,
	revision INTEGER NOT NULL UNIQUE,
	deleted  INTEGER NOT NULL,
	data     TEXT NOT NULL
) STRICT;

CREATE TABLE pam_requests (
	id        TEXT PRIMARY KEY,
	requester TEXT NOT NULL,
	policy_id TEXT NOT NULL,
	state     TEXT NOT NULL,
	due       INTEGER,
	version   INTEGER NOT NULL,
	data      TEXT NOT NULL
) STRICT;
CREATE INDEX pam_requests_grants ON pam_requests (requester, policy_id) WHERE state = 'approved';
CREATE INDEX pam_requests_due ON pam_requests (due) WHERE due IS NOT NULL;
CREATE INDEX pam_requests_requester ON pam_requests (requester, id);
CREATE INDEX pam_requests_policy ON pam_requests (policy_id, state);

-- One decision per approver per request.
CREATE TABLE pam_decisions (
	request_id TEXT NOT NULL,
	approver   TEXT NOT NULL,
	verdict    TEXT NOT NULL,
	position   INTEGER NOT NULL,
	PRIMARY KEY (request_id, approver)
) STRICT;

-- The audit trail. seq is gapless: Commit continues from the last one
-- under the database's write lock.
CREATE TABLE pam_events (
	seq        INTEGER PRIMARY KEY,
	time       INTEGER NOT NULL,
	type       TEXT NOT NULL,
	actor      TEXT NOT NULL,
	request_id TEXT NOT NULL,
	policy_id  TEXT NOT NULL,
	task       TEXT NOT NULL,
	outcome    TEXT NOT NULL,
	detail     TEXT
) STRICT;
-- Indexes for the selective filters only: every index is written on
-- every Guard. Type and outcome filters are served by the newest-first
-- scan of the primary key.
CREATE INDEX pam_events_actor ON pam_events (actor, seq);
CREATE INDEX pam_events_task ON pam_events (task, seq);
CREATE INDEX pam_events_request ON pam_events (request_id, seq) WHERE request_id <> '';
CREATE INDEX pam_events_policy ON pam_events (policy_id, seq) WHERE policy_id <> '';
CREATE INDEX pam_events_time ON pam_events (time);

-- The store-wide counter of policy writes (pam.Store.PolicyRevision).
CREATE TABLE pam_meta (
	id              INTEGER PRIMARY KEY CHECK (id = 1),
	policy_revision INTEGER NOT NULL
) STRICT;
INSERT INTO pam_meta (id, policy_revision) VALUES (1, 0);
