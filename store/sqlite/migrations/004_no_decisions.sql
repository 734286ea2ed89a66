-- Decisions are kept in the request's data only. The table of decisions
-- refused a second decision by one approver and Commit refused fewer
-- decisions than it held: rules of the engine, which a store does not
-- make (pam.Store). Nothing read it.
DROP TABLE pam_decisions;
