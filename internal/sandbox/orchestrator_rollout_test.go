package sandbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"irctl.dev/irctl/internal/sandbox"
	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

// These tests change the orchestrator Deployment, its Secrets and its
// database role's password, through the controllers and simulated kubelets
// that roll the Deployment out, and put them back.

func TestOrchestratorAPIHealth(t *testing.T) {
	s := sandboxtest.Get(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, s.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	healthy := func() string {
		if got := orchGet(t, s, "/health", ""); got.status != http.StatusOK {
			return "/health = " + got.String() + ", want 200"
		}
		return ""
	}
	unhealthy := func(part string) func() string {
		return func() string {
			if got := orchGet(t, s, "/health", ""); got.status != http.StatusServiceUnavailable || got.body[part] == nil {
				return "/health = " + got.String() + ", want 503 naming the " + part
			}
			return ""
		}
	}
	setRolePassword := func(pw string) {
		t.Helper()
		// ALTER ROLE takes no parameters; the password is hex.
		if _, err := admin.Exec(ctx, "ALTER ROLE orchestrator PASSWORD '"+pw+"'"); err != nil {
			t.Fatal(err)
		}
	}
	untilOK(t, healthy)

	t.Run("password rotated in the database but not in the Secret", func(t *testing.T) {
		setRolePassword(randomSecret())
		defer setRolePassword(s.DBPassword)
		untilOK(t, unhealthy("database"))
		setRolePassword(s.DBPassword)
		untilOK(t, healthy)
	})

	t.Run("wrong password in the Secret, live after a rollout restart", func(t *testing.T) {
		setSecretKey(t, cs, "orchestrator-db", "password", "wrong-"+randomSecret())
		defer func() {
			setSecretKey(t, cs, "orchestrator-db", "password", s.DBPassword)
			rolloutRestart(t, s, cs)
			untilOK(t, healthy)
		}()
		// Until the pods restart they keep the right password.
		time.Sleep(time.Second)
		if msg := healthy(); msg != "" {
			t.Errorf("before the restart: %s", msg)
		}
		rolloutRestart(t, s, cs)
		untilOK(t, unhealthy("database"))
		// So do its requests, once its pool has reconnected.
		untilOK(t, func() string {
			if got := orchGet(t, s, "/v1/me", "", "X-API-Key", "attacker-key-1"); got.status != http.StatusServiceUnavailable {
				return "a request with the wrong database password = " + got.String() + ", want 503"
			}
			return ""
		})
	})

	t.Run("no orchestrator pod Ready", func(t *testing.T) {
		scale := func(n int32) {
			t.Helper()
			patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
			if _, err := cs.AppsV1().Deployments(sandbox.DemoNamespace).Patch(ctx, sandbox.OrchestratorDeployment,
				types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		scale(0)
		defer func() { scale(3); untilOK(t, healthy) }()
		untilOK(t, unhealthy("pods"))
	})
}

func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// setSecretKey writes value under key of Secret name in the demo namespace.
func setSecretKey(t *testing.T, cs kubernetes.Interface, name, key, value string) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"data": map[string][]byte{key: []byte(value)}})
	if _, err := cs.CoreV1().Secrets(sandbox.DemoNamespace).Patch(t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// rolloutRestart does what `kubectl rollout restart deployment/orchestrator`
// does and waits, as `kubectl rollout status` does, until it has completed,
// then until the stand-in s runs the new pods' configuration (its /health
// reports the generation).
func rolloutRestart(t *testing.T, s *sandbox.Sandbox, cs kubernetes.Interface) {
	t.Helper()
	ctx := t.Context()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`,
		time.Now().Format(time.RFC3339Nano))
	deps := cs.AppsV1().Deployments(sandbox.DemoNamespace)
	dep, err := deps.Patch(ctx, sandbox.OrchestratorDeployment, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !rolledOut(dep) {
		if time.Now().After(deadline) {
			t.Fatalf("the orchestrator rollout did not complete within 2 minutes: generation %d, status %+v", dep.Generation, dep.Status)
		}
		time.Sleep(200 * time.Millisecond)
		if dep, err = deps.Get(ctx, sandbox.OrchestratorDeployment, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	untilOK(t, func() string {
		if got := orchGet(t, s, "/health", ""); got.body["generation"] != float64(dep.Generation) {
			return fmt.Sprintf("the stand-in runs generation %v after the rollout of %d", got.body["generation"], dep.Generation)
		}
		return ""
	})
}

func rolledOut(d *appsv1.Deployment) bool {
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == *d.Spec.Replicas &&
		st.Replicas == st.UpdatedReplicas && st.AvailableReplicas == st.UpdatedReplicas
}

// untilOK waits up to a minute for f to return "" (see eventually). The
// stand-in notices a completed rollout on its next look at the Deployment.
func untilOK(t *testing.T, f func() string) {
	t.Helper()
	eventually(t, time.Minute, func() (bool, string) {
		msg := f()
		return msg == "", msg
	})
}

func TestOrchestratorAPIJWTRotationTakesEffectAfterRolloutRestart(t *testing.T) {
	s := sandboxtest.Get(t)
	cs, err := kubernetes.NewForConfig(s.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	// Start from a completed rollout, with the Secret's key live.
	rolloutRestart(t, s, cs)
	oldKey := jwtKey(t, s)
	oldToken, err := sandbox.SignOrchestratorJWT(oldKey, 7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := orchGet(t, s, "/v1/me", "", bearer(oldToken)...); got.status != http.StatusOK {
		t.Fatalf("a JWT signed with the Secret's key after a rollout = %s, want 200", got)
	}

	newKey := randomSecret()
	setSecretKey(t, cs, "orchestrator-jwt-secret", "secret", newKey)
	newToken, err := sandbox.SignOrchestratorJWT([]byte(newKey), 7, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// The running pods keep the key they started with: give the stand-in
	// several looks at the cluster to (wrongly) pick up the new one.
	time.Sleep(time.Second)
	if got := orchGet(t, s, "/v1/me", "", bearer(oldToken)...); got.status != http.StatusOK {
		t.Errorf("old-key JWT after the Secret's rotation, before a restart = %s, want 200", got)
	}
	if got := orchGet(t, s, "/v1/me", "", bearer(newToken)...); got.status != http.StatusUnauthorized {
		t.Errorf("new-key JWT before a restart = %s, want 401", got)
	}

	rolloutRestart(t, s, cs)
	if got := orchGet(t, s, "/v1/me", "", bearer(oldToken)...); got.status != http.StatusUnauthorized {
		t.Errorf("old-key JWT after the rollout restart = %s, want 401", got)
	}
	if got := orchGet(t, s, "/v1/me", "", bearer(newToken)...); got.status != http.StatusOK {
		t.Errorf("new-key JWT after the rollout restart = %s, want 200", got)
	}
}
