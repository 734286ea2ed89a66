-- Decisions are kept in the request's data only. The table of decisions
-- refused a second decision by one approver and kept what a request's
-- data no longer held when its decisions shrank: rules of the engine,
-- which a store does not make (pam.Store). Nothing read it.
DROP TABLE pam_decisions;
