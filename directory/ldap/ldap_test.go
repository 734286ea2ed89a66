package ldap_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/directory/ldap"
	"github.com/zerostanding/pam/store/memory"
)

// slapd is a real OpenLDAP server (Debian's slapd), started by the test
// with a generated configuration: the mdb backend under dc=example,dc=com
// and the memberOf overlay.
type slapd struct {
	t    *testing.T
	dir  string
	addr string
	cmd  *exec.Cmd
}

const (
	suffix = "dc=example,dc=com"
	rootDN = "cn=admin," + suffix
	rootPW = "admin-secret"
)

func startSlapd(t *testing.T) *slapd {
	t.Helper()
	bin, err := exec.LookPath("slapd")
	if err != nil {
		for _, p := range []string{"/usr/sbin/slapd", "/usr/local/libexec/slapd"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		if os.Getenv("PAM_REQUIRE_LDAP") != "" {
			t.Fatal("no slapd, and PAM_REQUIRE_LDAP is set")
		}
		t.Skip("no slapd: install Debian's slapd package (.ci/run does) to run the LDAP tests")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile %[1]s/slapd.pid
database mdb
maxsize 104857600
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
overlay memberof
`, dir, suffix, rootDN, rootPW)
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &slapd{t: t, dir: dir, addr: addr}
	s.start(bin)
	t.Cleanup(s.stop)
	return s
}

func (s *slapd) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, "-f", filepath.Join(s.dir, "slapd.conf"), "-h", "ldap://"+s.addr+"/", "-d", "0")
	out := &strings.Builder{}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := goldap.DialURL("ldap://" + s.addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("slapd did not start:\n%s", out)
		}
	}
}

func (s *slapd) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// admin runs f bound as the root DN.
func (s *slapd) admin(f func(c *goldap.Conn) error) {
	s.t.Helper()
	c, err := goldap.DialURL("ldap://" + s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(rootDN, rootPW); err != nil {
		s.t.Fatal(err)
	}
	if err := f(c); err != nil {
		s.t.Fatal(err)
	}
}

func person(uid string) string { return "uid=" + uid + ",ou=people," + suffix }
func group(cn string) string   { return "cn=" + cn + ",ou=groups," + suffix }

// seed writes the directory of the tests:
//
//	approvers:  bob, mailbox-leads
//	mailbox-leads: carol, regional-leads
//	regional-leads: dave, mailbox-leads (a cycle)
//	pam-admins: erin
//	security: frank (and a member that no longer exists)
//	svc: a service account that reads the directory
func (s *slapd) seed() {
	s.admin(func(c *goldap.Conn) error {
		add := func(dn string, attrs map[string][]string) error {
			r := goldap.NewAddRequest(dn, nil)
			for k, v := range attrs {
				r.Attribute(k, v)
			}
			return c.Add(r)
		}
		if err := add(suffix, map[string][]string{"objectClass": {"dcObject", "organization"}, "o": {"Example"}, "dc": {"example"}}); err != nil {
			return err
		}
		for _, ou := range []string{"people", "groups"} {
			if err := add("ou="+ou+","+suffix, map[string][]string{"objectClass": {"organizationalUnit"}, "ou": {ou}}); err != nil {
				return err
			}
		}
		for _, uid := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "svc"} {
			if err := add(person(uid), map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid},
				"userPassword": {"pw-" + uid}}); err != nil {
				return err
			}
		}
		// Groups are made before they are members of others; the cycle is
		// closed afterwards.
		for _, g := range []struct {
			cn      string
			members []string
		}{
			{"regional-leads", []string{person("dave")}},
			{"mailbox-leads", []string{person("carol"), group("regional-leads")}},
			{"approvers", []string{person("bob"), group("mailbox-leads")}},
			{"pam-admins", []string{person("erin")}},
			{"security", []string{person("frank"), person("gone")}},
		} {
			if err := add(group(g.cn), map[string][]string{"objectClass": {"groupOfNames"}, "cn": {g.cn}, "member": g.members}); err != nil {
				return err
			}
		}
		m := goldap.NewModifyRequest(group("regional-leads"), nil)
		m.Add("member", []string{group("mailbox-leads")})
		return c.Modify(m)
	})
}

func (s *slapd) config(now func() time.Time) ldap.Config {
	return ldap.Config{URL: "ldap://" + s.addr, BindDN: person("svc"), BindPassword: "pw-svc",
		UserBaseDN: "ou=people," + suffix, GroupBaseDN: "ou=groups," + suffix, Timeout: 2 * time.Second, DialTimeout: 2 * time.Second, Now: now}
}

// clock is a settable clock for the cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestMembership: direct and nested membership, a cycle, unknown people
// and groups, Members of a nested group, and the cache.
func TestMembership(t *testing.T) {
	s := startSlapd(t)
	s.seed()
	clk := &clock{now: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)}
	d, err := ldap.New(s.config(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	for _, c := range []struct {
		group, user string
		want        bool
	}{
		{"approvers", "bob", true},      // direct
		{"approvers", "carol", true},    // one level down
		{"approvers", "dave", true},     // two levels down, through a cycle
		{"mailbox-leads", "dave", true}, // the cycle's other way
		{"approvers", "alice", false},
		{"approvers", "erin", false},
		{"pam-admins", "erin", true},
		{"security", "frank", true}, // beside a member that no longer exists
		{"nobody", "bob", false},    // no such group
		{"approvers", "zed", false}, // no such person
		{"approvers", "b*", false},  // a filter in a name is a name
	} {
		got, err := d.IsMember(ctx, c.group, c.user)
		if err != nil || got != c.want {
			t.Errorf("IsMember(%s, %s) = %v, %v; want %v", c.group, c.user, got, err, c.want)
		}
	}
	members, err := d.Members(ctx, "approvers")
	slices.Sort(members)
	if err != nil || !slices.Equal(members, []string{"bob", "carol", "dave"}) {
		t.Errorf("Members(approvers) = %v, %v", members, err)
	}
	// The cache answers until its TTL, then the server does.
	n := d.CacheLen()
	s.admin(func(c *goldap.Conn) error {
		m := goldap.NewModifyRequest(group("approvers"), nil)
		m.Delete("member", []string{person("bob")})
		return c.Modify(m)
	})
	if ok, _ := d.IsMember(ctx, "approvers", "bob"); !ok || d.CacheLen() != n {
		t.Error("within the TTL the cached answer is not used")
	}
	clk.Add(61 * time.Second)
	if ok, err := d.IsMember(ctx, "approvers", "bob"); ok || err != nil {
		t.Errorf("after the TTL, bob removed: %v, %v", ok, err)
	}
	// The cache is bounded.
	small, _ := ldap.New(func() ldap.Config { c := s.config(clk.Now); c.CacheSize = 3; return c }())
	defer small.Close()
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank"} {
		small.IsMember(ctx, "approvers", u)
	}
	if small.CacheLen() > 3 {
		t.Errorf("a cache of 3 holds %d", small.CacheLen())
	}
	if _, err := ldap.New(ldap.Config{URL: "http://x", UserBaseDN: "a", GroupBaseDN: "b"}); !errors.Is(err, pam.ErrInvalid) {
		t.Errorf("an http URL: %v", err)
	}
}

// TestEngineOverLDAP: approvals and admin checks through a Manager on
// the LDAP directory; an approver removed from the group mid-quorum no
// longer counts; the server stopped means refusals, never approvals, and
// it works again once the server is back.
func TestEngineOverLDAP(t *testing.T) {
	s := startSlapd(t)
	s.seed()
	clk := &clock{now: time.Now()}
	d, err := ldap.New(s.config(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	m, err := pam.New(memory.New(), d, &pam.Options{AdminGroup: "pam-admins"})
	if err != nil {
		t.Fatal(err)
	}
	as := func(who string) context.Context { return pam.WithActor(context.Background(), who) }
	policy := pam.Policy{ID: "drop", Scope: pam.TaskScope("Drop-Table"), Approval: pam.Manual,
		ApproverGroups: []pam.ApproverGroup{{Group: "approvers", MinApprovals: 2}}}
	if _, err := m.CreatePolicy(as("alice"), policy); !errors.Is(err, pam.ErrForbidden) {
		t.Fatalf("alice, no admin, creates a policy: %v", err)
	}
	if _, err := m.CreatePolicy(as("erin"), policy); err != nil {
		t.Fatalf("erin (pam-admins) creates a policy: %v", err)
	}
	r, err := m.Submit(as("alice"), pam.RequestInput{PolicyID: "drop", Reason: "CHG-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Approve(as("frank"), r.ID, ""); !errors.Is(err, pam.ErrForbidden) && !errors.Is(err, pam.ErrNotFound) {
		t.Errorf("frank, no approver: %v", err)
	}
	if _, err := m.Approve(as("dave"), r.ID, "nested"); err != nil {
		t.Fatalf("dave, nested approver: %v", err)
	}
	// dave leaves regional-leads (and so approvers) before carol approves:
	// his approval no longer counts once the cache has expired.
	s.admin(func(c *goldap.Conn) error {
		mr := goldap.NewModifyRequest(group("regional-leads"), nil)
		mr.Delete("member", []string{person("dave")})
		return c.Modify(mr)
	})
	clk.Add(2 * time.Minute)
	got, err := m.Approve(as("carol"), r.ID, "second")
	if err != nil || got.State != pam.Pending {
		t.Fatalf("carol's approval after dave left: %+v, %v; want still pending", got.State, err)
	}
	prog, err := m.Progress(as("carol"), r.ID)
	if err != nil || prog.Have != 1 || len(prog.Uncounted) != 1 || prog.Uncounted[0] != "dave" {
		t.Errorf("progress after dave left: %+v, %v", prog, err)
	}

	// The server stops: every answer is an error, the engine refuses,
	// nothing is approved.
	s.stop()
	clk.Add(2 * time.Minute)
	if ok, err := d.IsMember(context.Background(), "approvers", "bob"); ok || err == nil {
		t.Errorf("with the server down: %v, %v", ok, err)
	}
	if _, err := m.Approve(as("bob"), r.ID, "while down"); err == nil {
		t.Error("an approval went through with the directory down")
	}
	if cur, _ := m.Request(as("alice"), r.ID); cur.State != pam.Pending || len(cur.Decisions) != 2 {
		t.Errorf("after the refused approval: %s, %d decisions", cur.State, len(cur.Decisions))
	}
	// Back: bob's approval completes the quorum.
	s.start(bin(t))
	if got, err := m.Approve(as("bob"), r.ID, "back"); err != nil || got.State != pam.Approved {
		t.Errorf("with the server back: %+v, %v", got.State, err)
	}
}

func bin(t *testing.T) string {
	if p, err := exec.LookPath("slapd"); err == nil {
		return p
	}
	return "/usr/sbin/slapd"
}
