-- Guard runs (pam.Event.Run, pam.OpenRun). Each event of a run carries
-- its ID; the events before runs existed carry ''. A search by run is
-- rare beside the writes of every Guard, and most events have none, so
-- its index leaves them out.
ALTER TABLE pam_events ADD COLUMN run TEXT NOT NULL DEFAULT '';
CREATE INDEX pam_events_run ON pam_events (run, seq) WHERE run <> '';

-- The open runs: written in the commit of a run's start (an ID open
-- already violates the primary key), deleted in the commit of its end,
-- so a run ends once. started and due are Unix nanoseconds; Sweep reads
-- the due ones in (due, id) order.
CREATE TABLE pam_runs (
	id         TEXT PRIMARY KEY,
	actor      TEXT NOT NULL,
	task       TEXT NOT NULL,
	policy_id  TEXT NOT NULL,
	request_id TEXT NOT NULL,
	started    BIGINT NOT NULL,
	due        BIGINT NOT NULL
);
CREATE INDEX pam_runs_due ON pam_runs (due, id);

-- pam_check_open aborts the transaction when the end of a run found it
-- not open (never opened, or ended already), with its own code, which
-- Commit reports as pam.ErrNotFound rather than a version conflict.
CREATE FUNCTION pam_check_open(ok boolean, what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF ok IS NOT TRUE THEN
		RAISE EXCEPTION 'run not open: %', what USING ERRCODE = 'PAM02';
	END IF;
	RETURN true;
END
$$;
