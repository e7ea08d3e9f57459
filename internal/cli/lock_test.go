package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/lock"
	"irctl.dev/irctl/internal/sandbox"
)

func TestSecondResponderIsRefusedNamingTheHolder(t *testing.T) {
	h := newHarness(t, 2)
	ctx := context.Background()
	c, err := kube.NewClients(h.sb.RESTConfig, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, h.sb.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	for _, tc := range []struct {
		name string
		o    lock.Options
		want string
	}{
		{"lease", lock.Options{Kube: c, Namespace: sandbox.DemoNamespace}, "Lease " + sandbox.DemoNamespace + "/irctl-"},
		{"advisory lock", lock.Options{DB: pool}, "PostgreSQL advisory lock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Incident, tc.o.Holder = h.incident, "alice@laptop (pid 42)"
			other, err := lock.Acquire(ctx, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			pods, rows := h.podState(), h.dbState()
			r := h.run("contain", "--yes")
			if r.code != exitcode.Precondition || !strings.Contains(r.stderr, "alice@laptop (pid 42)") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("with the lock held: exit %d, %q", r.code, r.stderr)
			}
			if !equalMaps(pods, h.podState()) || rows != h.dbState() {
				t.Error("refused run changed something")
			}
			// A rehearsal changes nothing and needs no lock.
			if r := h.run("contain", "--dry-run=server"); r.code != 0 {
				t.Errorf("server dry run while locked: exit %d %s", r.code, r.stderr)
			}
			other.Release()
			if r := h.run("contain", "--yes"); r.code != 0 {
				t.Errorf("after release: exit %d %s", r.code, r.stderr)
			}
		})
	}
}
