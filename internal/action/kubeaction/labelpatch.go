package kubeaction

// The label patches of k8s.label and its undo.

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/progress"
)

// patchPods merge-patches the labels of pods concurrently (a nil value
// removes the label). The patch carries a UID precondition so that a pod
// deleted and recreated under the same name is not touched by mistake.
// A patch whose outcome is uncertain (a lost response, a 5xx, a 429, a
// conflict) is not resent before the pod has been read again: a pod that
// already carries the labels is done, and stays in the undo record.
func patchPods(ctx context.Context, c *kube.Clients, ns string, changes []labelChange, patchOf func(labelChange) (map[string]*string, map[string]*string), dry bool, prog *progress.Counter) ([]labelChange, []action.Failure) {
	var mu sync.Mutex
	var done []labelChange
	var failed []action.Failure
	opts := metav1.PatchOptions{
		FieldManager: kube.FieldManager,
		DryRun:       kube.DryRunOpt(dry),
		// The patch holds labels only, which have no unknown fields to
		// report; Ignore spares the API server a strict second decode
		// of every patched pod.
		FieldValidation: "Ignore",
	}
	pods := c.Core.CoreV1().Pods(ns)
	action.ForEach(ctx, Workers, len(changes), func(i int) {
		ch := changes[i]
		want, annotations := patchOf(ch)
		meta := map[string]any{"labels": want, "uid": ch.UID}
		if len(annotations) > 0 {
			meta["annotations"] = annotations
		}
		b, _ := json.Marshal(map[string]any{"metadata": meta})
		err := kube.Write(ctx, func() error {
			_, err := pods.Patch(ctx, ch.Name, types.MergePatchType, b, opts)
			return err
		}, func() (bool, error) {
			// A server dry run leaves nothing to find: patch again.
			if dry {
				return false, nil
			}
			pod, err := pods.Get(ctx, ch.Name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if pod.UID != ch.UID {
				return false, fmt.Errorf("pod %s/%s was replaced (its UID changed)", ns, ch.Name)
			}
			return hasLabels(pod.Labels, want), nil
		})
		if err != nil && ctx.Err() != nil && !dry {
			// Interrupted mid-write: the patch may have reached the server.
			// Read it back (briefly, past the cancellation) so that a pod
			// that was changed is in the undo record, not in the failures.
			vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
			if pod, gerr := pods.Get(vctx, ch.Name, metav1.GetOptions{}); gerr == nil && pod.UID == ch.UID && hasLabels(pod.Labels, want) {
				err = nil
			}
			cancel()
		}
		prog.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, action.Failure{Target: ns + "/" + ch.Name, Error: kube.Short(err)})
			return
		}
		done = append(done, ch)
	})
	sort.Slice(done, func(i, j int) bool { return done[i].Name < done[j].Name })
	sort.Slice(failed, func(i, j int) bool { return failed[i].Target < failed[j].Target })
	return done, failed
}

// hasLabels reports whether have matches want (nil: absent).
func hasLabels(have map[string]string, want map[string]*string) bool {
	for k, v := range want {
		got, ok := have[k]
		if (v == nil && ok) || (v != nil && (!ok || got != *v)) {
			return false
		}
	}
	return true
}
