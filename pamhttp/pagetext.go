package pamhttp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zerostanding/pam"
)

// The page's words: durations, times, policies and errors as sentences.
// Nothing here shows Go's own text ("20h0m0s", "pam: no actor in
// context") to a person.

// words writes a duration for people: "2 hours", "1 hour 30 minutes",
// "45 minutes", "3 days 4 hours", "20 seconds". It keeps the two largest
// units.
func words(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	d = d.Round(time.Second)
	units := []struct {
		n    time.Duration
		name string
	}{{24 * time.Hour, "day"}, {time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}}
	var parts []string
	for _, u := range units {
		if len(parts) == 2 {
			break
		}
		if k := d / u.n; k > 0 {
			parts = append(parts, plural(int(k), u.name))
			d -= k * u.n
		} else if len(parts) > 0 {
			break // "1 day", not "1 day 0 hours 5 minutes"
		}
	}
	if len(parts) == 0 {
		return "0 seconds"
	}
	return strings.Join(parts, " ")
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// relative says when t is from now: "in 3 hours", "2 minutes ago", "now".
func relative(t, now time.Time) string {
	d := t.Sub(now)
	switch {
	case d > -time.Second && d < time.Second:
		return "now"
	case d > 0:
		return "in " + words(d)
	}
	return words(-d) + " ago"
}

// clock writes t for people in UTC, naming the zone: "28 Nov 2026,
// 14:30 UTC". The page's script rewrites it in the viewer's zone.
func clock(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 MST") }

// fieldLabels are the request form's fields, named as the page names
// them, by the engine's field (pam.ValidationError.Field, its first
// part).
var fieldLabels = map[string]string{
	"Reason": "reason", "Ticket": "ticket", "Duration": "hours", "Start": "start",
	"Bind": "bind", "MaxUses": "uses", "PolicyID": "policy_id", "Scope": "policy_id",
	"Comment": "comment", "By": "hours",
}

// sentence says err to a person, and names the form field it is about
// ("" for the form as a whole). p, when known, is the policy the action
// was under, for the limits it sets.
func sentence(err error, p *pam.Policy) (field, text string) {
	var ve *pam.ValidationError
	var re *pam.RejectedError
	switch {
	case errors.As(err, &ve):
		name, _, _ := strings.Cut(ve.Field, ".")
		name, _, _ = strings.Cut(name, "[")
		field = fieldLabels[name]
		label := strings.ToLower(name)
		if field == "" {
			label = ve.Field
		}
		return field, upper(fmt.Sprintf("the %s %s.", label, strings.TrimSuffix(ve.Problem, ".")))
	case errors.As(err, &re):
		return "", "The policy's rule refused the request: " + strings.Join(re.Messages, "; ") + "."
	case errors.Is(err, pam.ErrDurationTooLong):
		if p != nil && p.MaxDuration > 0 {
			return "hours", fmt.Sprintf("That is longer than this access allows: at most %s.", words(p.MaxDuration))
		}
		return "hours", "That is longer than this access allows."
	case errors.Is(err, pam.ErrNoActor):
		return "", "You are not signed in."
	case errors.Is(err, pam.ErrSelfApproval):
		return "", "You cannot decide your own request: someone else in its approver groups must."
	case errors.Is(err, pam.ErrAlreadyDecided):
		return "", "You have decided this request already."
	case errors.Is(err, pam.ErrForbidden):
		return "", "You may not do that."
	case errors.Is(err, pam.ErrNotFound):
		return "", "There is no such request, or you may not see it."
	case errors.Is(err, pam.ErrWrongState):
		return "", "The request is no longer in a state that allows that: it was decided, cancelled or ended, or it expired."
	case errors.Is(err, pam.ErrConflict):
		return "", "Someone changed the request at the same moment. Look at it again and retry."
	case errors.Is(err, pam.ErrNoPolicy):
		return "policy_id", "No policy covers that access."
	case errors.Is(err, pam.ErrAmbiguous):
		return "policy_id", "Several policies cover that access: choose one."
	case errors.Is(err, pam.ErrLimit):
		return "", "You have reached the limit of requests waiting at once, or of break-glass uses in the period."
	case errors.Is(err, pam.ErrInvalid):
		return "", "Something in the form is not valid."
	}
	return "", "Something went wrong. Try again, and tell your administrator if it persists."
}

func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// rules says a policy in words, one sentence each.
func rules(p *pam.Policy) []string {
	var out []string
	switch {
	case p.Approval == pam.Auto:
		out = append(out, "Approved automatically when asked.")
	default:
		var need []string
		for _, g := range p.ApproverGroups {
			n := max(g.MinApprovals, 1)
			need = append(need, fmt.Sprintf("%s from %s", plural(n, "approval"), g.Group))
		}
		if len(need) > 0 {
			out = append(out, "Needs "+andList(need)+"; the requester cannot approve.")
		}
	}
	if p.AutoApproveRule != "" {
		out = append(out, "A rule may approve it automatically.")
	}
	if p.MaxDuration > 0 {
		out = append(out, "Access for at most "+words(p.MaxDuration)+".")
	}
	if p.PendingTTL > 0 {
		out = append(out, "A request waits at most "+words(p.PendingTTL)+" for its approvals.")
	}
	if len(p.RequesterGroups) > 0 {
		out = append(out, "Only members of "+andList(p.RequesterGroups)+" may ask.")
	}
	if len(p.RequireBind) > 0 {
		out = append(out, "A grant must name "+andList(p.RequireBind)+": it covers only operations on those.")
	}
	if p.MaxUses > 0 {
		out = append(out, "A grant allows at most "+plural(p.MaxUses, "run")+".")
	}
	if p.Condition != "" {
		out = append(out, "Only operations that meet its conditions are covered.")
	}
	if p.RequestRule != "" {
		out = append(out, "A rule checks each request when it is asked.")
	}
	if p.EscalateAfter > 0 && p.EscalationGroup != "" {
		out = append(out, "Escalates to "+p.EscalationGroup+" after "+words(p.EscalateAfter)+" without a decision.")
	}
	if p.MaxExtendedDuration > 0 {
		out = append(out, "Can be extended to "+words(p.MaxExtendedDuration)+" in all.")
	}
	if p.BreakGlass != nil {
		out = append(out, "Members of "+p.BreakGlass.Group+" may break glass, reviewed afterwards.")
	}
	return out
}

// andList joins items as "a", "a and b", "a, b and c".
func andList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
