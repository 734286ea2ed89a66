-- What pam.RequestFilter's Search and DecidedBy match, beside each
-- request: Request.SearchText and Request.DecidersText, written with the
-- request (sqlstore.RequestWrite). The rows written before are filled
-- by the data migration that follows this script (sqlstore.FillSearch).
ALTER TABLE pam_requests ADD COLUMN search TEXT NOT NULL DEFAULT '';
ALTER TABLE pam_requests ADD COLUMN deciders TEXT NOT NULL DEFAULT '';
