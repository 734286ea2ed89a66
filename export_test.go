package pam

// The pure lifecycle, exported to the tests of package pam_test.
type (
	Facts      = facts
	Membership = membership
)

var (
	Apply   = apply
	MayView = mayView
)
