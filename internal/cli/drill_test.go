package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/exitcode"
)

func TestDrillRefusesBadInputBeforeStartingAnything(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nrunbook: security-incident\nphases:\n  - phase: contain\natacker: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"drill", "--scenario", "nope"}, exitcode.Usage, "no scenario \"nope\" (scenarios: break-glass-stolen, cluster-compromise, leaked-api-keys)"},
		{[]string{"drill", "--scenario", bad}, exitcode.Usage, bad + ":5: unknown field \"atacker\""},
		{[]string{"drill", "--sandbox-dir", filepath.Join(dir, "none")}, exitcode.Precondition, "no sandbox:"},
	} {
		var out, errb bytes.Buffer
		code := Run(context.Background(), c.args, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb})
		if code != c.code || !strings.Contains(errb.String(), c.want) || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, %q; want exit %d with %q on one line", c.args, code, errb.String(), c.code, c.want)
		}
	}
}
