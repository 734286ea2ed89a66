package pamhttp

// Routes returns every pattern h serves.
func Routes(h *Handler) []string { return h.routes }

// Statuses returns the status table: each sentinel with its status and
// problem code.
func Statuses() (errs []error, sts []int, codes []string) {
	for _, s := range statuses {
		errs, sts, codes = append(errs, s.err), append(sts, s.status), append(codes, s.code)
	}
	return errs, sts, codes
}

// StatusOf returns the status and problem code the handler answers err
// with.
func StatusOf(err error) (int, string) { return status(err) }

// SignIn returns where the page sends a signed-out visitor of r.
var SignIn = signIn
