package sandbox_test

import (
	"bufio"
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// follow streams pod's log (follow=true, timestamps, from since) into a
// channel of lines, closed when the stream ends.
func follow(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, pod string, since time.Time) <-chan string {
	t.Helper()
	st := metav1.NewTime(since)
	rc, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Follow: true, Timestamps: true, SinceTime: &st}).Stream(ctx)
	if err != nil {
		t.Fatalf("follow %s/%s: %v", ns, pod, err)
	}
	out := make(chan string, 1000)
	go func() {
		defer close(out)
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			out <- sc.Text()
		}
	}()
	return out
}

// A request the stand-in API refuses while the orchestrator's logs are
// followed shows in one replica's stream within seconds, with the words
// the runbook's monitoring step looks for.
func TestFollowSeesTheStandInAPIsRequestsAsTheyHappen(t *testing.T) {
	s := sandboxtest.Get(t)
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	defer sandboxtest.ResetDB(t, s) // the request's audit row
	start := time.Now()
	pods := listPods(t, cs, sandbox.DemoNamespace, "app=orchestrator")
	var streams []<-chan string
	for _, p := range pods {
		streams = append(streams, follow(t, ctx, cs, p.Namespace, p.Name, start))
	}
	marker := "follow-test-" + randHex(4)
	if c := orchGet(t, s, "/v1/me", "203.0.113.77", "X-API-Key", "sk_live_not_a_key", "User-Agent", marker); c.status != 401 {
		t.Fatalf("a wrong key: %v", c)
	}
	found := 0
	deadline := time.After(10 * time.Second)
	for i, ch := range streams {
	read:
		for {
			select {
			case l, ok := <-ch:
				if !ok {
					t.Fatalf("the stream of %s ended while its pod runs", pods[i].Name)
				}
				if strings.Contains(l, marker) {
					found++
					if !strings.Contains(l, ` WARN request user_id=- ip=203.0.113.77 action=api_call method=GET resource=/v1/me status=401 `) ||
						!strings.Contains(l, `error="unauthorized: invalid api key"`) {
						t.Errorf("line: %q", l)
					}
				}
			case <-time.After(1500 * time.Millisecond):
				break read // this replica printed nothing more
			case <-deadline:
				break read
			}
		}
	}
	if found != 1 {
		t.Fatalf("the request is in %d of the %d replicas' followed logs, want 1", found, len(streams))
	}
}

// A follow ends when the pod is deleted, as the kubelet's does when the
// container stops.
func TestFollowEndsWhenThePodIsDeleted(t *testing.T) {
	s := sandboxtest.Get(t)
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ns := "follow-" + randHex(4)
	if err := sandbox.SeedPods(t.Context(), cs, ns, 1, map[string]string{"app": "orchestrator"}); err != nil {
		t.Fatal(err)
	}
	pod := listPods(t, cs, ns, "app=orchestrator")[0]
	ch := follow(t, t.Context(), cs, ns, pod.Name, time.Now().Add(-time.Hour))
	if err := cs.CoreV1().Pods(ns).Delete(t.Context(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("the follow did not end 30 s after the pod was deleted")
		}
	}
}

func randHex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n*2)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}
