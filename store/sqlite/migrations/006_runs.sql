-- Guard runs (pam.Event.Run, pam.OpenRun). Each event of a run carries
-- its ID; the events before runs existed carry ''. A search by run is
-- rare beside the writes of every Guard, and most events have none, so
-- its index leaves them out.
ALTER TABLE pam_events ADD COLUMN run TEXT NOT NULL DEFAULT '';
CREATE INDEX pam_events_run ON pam_events (run, seq) WHERE run <> '';

-- The open runs: written in the commit of a run's start, deleted in the
-- commit of its end, so a run ends once. started and due are Unix
-- nanoseconds; Sweep reads the due ones in (due, id) order.
CREATE TABLE pam_runs (
	id         TEXT PRIMARY KEY,
	actor      TEXT NOT NULL,
	task       TEXT NOT NULL,
	policy_id  TEXT NOT NULL,
	request_id TEXT NOT NULL,
	started    INTEGER NOT NULL,
	due        INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX pam_runs_due ON pam_runs (due, id);
