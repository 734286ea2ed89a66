-- pam_check aborts the transaction when a compare-and-swap found another
-- version: Commit sends all its statements in one round trip, so the
-- checks are made by the database.
CREATE FUNCTION pam_check(ok boolean, what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	IF ok IS NOT TRUE THEN
		RAISE EXCEPTION 'version conflict: %', what USING ERRCODE = 'PAM01';
	END IF;
	RETURN true;
END
$$;
