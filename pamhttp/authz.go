package pamhttp

import (
	"context"
	"fmt"

	"github.com/zerostanding/pam"
)

// Who may read what. Until the engine checks reads itself (its requester,
// an approver of its policy or an admin for a request; admins for the
// trail and the outbox), the handler checks them here and nowhere else:
// checkedReads is the Manager with those checks in front, and every
// route and the page call the engine through it. Once Manager.Request,
// Requests, Audit and Messages check the actor, delete this file and
// serve the Manager itself.

// checkedReads wraps the Manager's reads with the handler's read checks.
type checkedReads struct{ *pam.Manager }

var _ API = checkedReads{}

// Request returns request id if the actor may see it, and ErrNotFound
// otherwise: whether it exists is not told to others.
func (m checkedReads) Request(ctx context.Context, id string) (pam.Request, error) {
	req, err := m.Manager.Request(ctx, id)
	if err != nil {
		return req, err
	}
	ok, err := m.MayView(ctx, req)
	if err != nil {
		return pam.Request{}, err
	}
	if !ok {
		return pam.Request{}, fmt.Errorf("%w: request %q", pam.ErrNotFound, id)
	}
	return req, nil
}

// Requests lists the actor's own requests; everyone's (f.Requester "")
// and someone else's are for admins.
func (m checkedReads) Requests(ctx context.Context, f pam.RequestFilter) ([]pam.Request, string, error) {
	me, _ := pam.ActorFrom(ctx)
	if who, err := pam.CanonicalIdentity(f.Requester); err != nil || who != me {
		if err := m.requireAdmin(ctx); err != nil {
			return nil, "", err
		}
	}
	return m.Manager.Requests(ctx, f)
}

// Audit searches the trail: admins only.
func (m checkedReads) Audit(ctx context.Context, f pam.EventFilter) ([]pam.Event, int64, error) {
	if err := m.requireAdmin(ctx); err != nil {
		return nil, 0, err
	}
	return m.Manager.Audit(ctx, f)
}

// Verify checks the trail: admins only.
func (m checkedReads) Verify(ctx context.Context, o pam.VerifyOptions) (pam.VerifyResult, error) {
	if err := m.requireAdmin(ctx); err != nil {
		return pam.VerifyResult{}, err
	}
	return m.Manager.Verify(ctx, o)
}

// Messages lists the outbox: admins only.
func (m checkedReads) Messages(ctx context.Context, f pam.MessageFilter) ([]pam.Message, string, error) {
	if err := m.requireAdmin(ctx); err != nil {
		return nil, "", err
	}
	return m.Manager.Messages(ctx, f)
}

// Approve, Deny, Cancel and Revoke answer ErrNotFound, as Request does,
// to those who may not see the request.

func (m checkedReads) Approve(ctx context.Context, id, comment string) (pam.Request, error) {
	if _, err := m.Request(ctx, id); err != nil {
		return pam.Request{}, err
	}
	return m.Manager.Approve(ctx, id, comment)
}

func (m checkedReads) Deny(ctx context.Context, id, comment string) (pam.Request, error) {
	if _, err := m.Request(ctx, id); err != nil {
		return pam.Request{}, err
	}
	return m.Manager.Deny(ctx, id, comment)
}

func (m checkedReads) Cancel(ctx context.Context, id, comment string) (pam.Request, error) {
	if _, err := m.Request(ctx, id); err != nil {
		return pam.Request{}, err
	}
	return m.Manager.Cancel(ctx, id, comment)
}

func (m checkedReads) Revoke(ctx context.Context, id, comment string) (pam.Request, error) {
	if _, err := m.Request(ctx, id); err != nil {
		return pam.Request{}, err
	}
	return m.Manager.Revoke(ctx, id, comment)
}

// requireAdmin answers ErrForbidden to non-admins.
func (m checkedReads) requireAdmin(ctx context.Context) error {
	ok, err := m.IsAdmin(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: admins only", pam.ErrForbidden)
	}
	return nil
}
