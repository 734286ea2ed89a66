-- The catalog (pam.Catalog): one row, written by Commit like a policy.
-- version is compared as a policy's is (pam_check); revision is taken
-- from pam_meta.policy_revision, the counter policy writes take theirs
-- from, under its row lock, so PolicyRevision moves on a catalog write.
-- data is the catalog as JSON, without its version and revision.
CREATE TABLE pam_catalog (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	version  BIGINT NOT NULL,
	revision BIGINT NOT NULL,
	data     TEXT NOT NULL
);
