package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"irctl.dev/irctl/internal/incident"
	"irctl.dev/irctl/internal/sandbox"
)

// TestUndoOfADrainUncordonsAndNamesTheEvictedPods cordons one sandbox node
// and drains another. A drain is partly reversible: undo uncordons its node
// and then names the evicted pods as not undone.
func TestUndoOfADrainUncordonsAndNamesTheEvictedPods(t *testing.T) {
	h := newHarness(t, 0)
	cordoned, drained := sandbox.NodeNames[0], sandbox.NodeNames[1]
	nodes := []string{cordoned, drained}
	unschedulable := func(node string) bool {
		t.Helper()
		n, err := h.cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Spec.Unschedulable
	}
	for _, n := range nodes {
		if unschedulable(n) {
			t.Fatalf("sandbox node %s is cordoned before the test", n)
		}
	}
	// The sandbox's nodes are shared: whatever happens, leave them
	// schedulable for the tests that follow.
	t.Cleanup(func() {
		for _, n := range nodes {
			patch := []byte(`{"spec":{"unschedulable":null}}`)
			if _, err := h.cs.CoreV1().Nodes().Patch(context.Background(), n, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				t.Errorf("uncordon %s: %v", n, err)
			}
		}
	})

	// Pods of this test on the drained node, owned by a ReplicaSet so the
	// drain may evict them, with a grace period of 0: no kubelet runs, so
	// a pod with a grace period would keep a deletionTimestamp forever.
	// The drain's pod_selector keeps it off the seeded pods and those of
	// other tests on the same node.
	lbls := map[string]string{"undo-test": h.ns}
	evicted := []string{h.runningPodOn(drained, lbls), h.runningPodOn(drained, lbls)}
	rb := filepath.Join(t.TempDir(), "drain.yaml")
	if err := os.WriteFile(rb, fmt.Appendf(nil, `apiVersion: irctl/v1
kind: Runbook
name: drain
params:
  namespace: {default: x}
phases:
  contain:
    - name: cordon-node
      action: k8s.cordon
      with: {nodes: [%s]}
    - name: drain-node
      action: k8s.drain
      with: {nodes: [%s], pod_selector: "undo-test={{ .namespace }}"}
`, cordoned, drained), 0o600); err != nil {
		t.Fatal(err)
	}

	r := h.run("-f", rb, "contain", "--yes")
	if r.code != 0 {
		t.Fatalf("contain: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !unschedulable(cordoned) || !unschedulable(drained) {
		t.Fatalf("both nodes should be cordoned:\n%s", r.stdout)
	}
	pods := h.podState()
	for _, p := range evicted {
		if _, ok := pods[p]; ok {
			t.Errorf("pod %s should be evicted", p)
		}
	}
	// The drain's outcome carries both the undo and the irreversible note.
	for _, rec := range h.journal() {
		if rec.Step == "drain-node" && rec.Kind == incident.KindOutcome && (len(rec.Undo) == 0 || rec.Irreversible == "") {
			t.Errorf("the drain's outcome should record an undo and an irreversible note: %+v", rec)
		}
	}

	r = h.run("undo", "contain", "--yes")
	if r.code != 0 {
		t.Fatalf("undo: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("undo:\n%s", r.stdout)
	if unschedulable(cordoned) || unschedulable(drained) {
		t.Errorf("both nodes should be schedulable again:\n%s", r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	// Newest first: the drain, then the cordon.
	want := []string{
		"undo drain-node (k8s.drain)",
		"  done: uncordoned 1 nodes: " + drained,
		"  not undone: evicted pods are not restored",
		"undo cordon-node (k8s.cordon)",
		"  done: uncordoned 1 nodes: " + cordoned,
	}
	if len(lines) != len(want) {
		t.Fatalf("want %d lines, got:\n%s", len(want), r.stdout)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d: %q, want it to start with %q", i+1, lines[i], w)
		}
	}
	slices.Sort(evicted)
	if names := h.ns + "/" + evicted[0] + ", " + h.ns + "/" + evicted[1]; !strings.HasSuffix(lines[2], ": "+names) {
		t.Errorf("the not-undone line should name the evicted pods %s: %q", names, lines[2])
	}
	if strings.Contains(r.stdout, "cannot undo") {
		t.Errorf("every step was at least partly undone:\n%s", r.stdout)
	}

	r = h.run("undo", "contain", "--yes")
	if want := "nothing to undo for phase contain in incident " + h.incident + "\n"; r.code != 0 || r.stdout != want {
		t.Errorf("second undo: exit %d, %q, want %q", r.code, r.stdout, want)
	}
}
