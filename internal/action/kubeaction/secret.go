package kubeaction

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// The annotations a rotated Secret carries. RotatedForIncident is the
// incident it was rotated for, so that running the phase again does not
// rotate it again (and log everybody out twice); RotatedAt is when (RFC
// 3339 with fractional seconds, UTC), which a validation can compare with
// the consumers' pod start times and k8s.rollout-restart's after_rotation_of
// with the last restart (a Secret's creationTimestamp does not change on
// rotation).
const (
	RotatedForIncident = "irctl.dev/rotated-for-incident"
	RotatedAt          = "irctl.dev/rotated-at"
)

const (
	defaultSecretKey   = "secret"
	defaultSecretBytes = 64
	minSecretBytes     = 16 // 128 bits
	maxSecretBytes     = 4096
)

// SecretRotate replaces one key of a Secret with fresh random bytes. The
// value never leaves the API request: plans, results, logs and the journal
// carry only fingerprints.
type SecretRotate struct{}

func (SecretRotate) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.secret-rotate",
		Timeout: 5 * time.Minute, // the step's default deadline
		Description: "Create a Secret, or replace one of its keys, with a new random value (crypto/rand, base64); " +
			"only keyed fingerprints (HMAC-SHA256 under the incident's key) are shown or recorded. Cannot be undone.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the Secret"},
			{Name: "name", Type: runbook.String, Required: true, Description: "name of the Secret (created if missing)"},
			{Name: "key", Type: runbook.String, Default: defaultSecretKey, Description: "data key to set; other keys are kept"},
			{Name: "bytes", Type: runbook.Int, Default: int64(defaultSecretBytes), Description: fmt.Sprintf("random bytes before base64 encoding (%d to %d)", minSecretBytes, maxSecretBytes)},
			{Name: "once_per_incident", Type: runbook.Bool, Default: true, Description: "skip a Secret already rotated for this incident, so rerunning the phase changes nothing"},
		},
		Validate: func(p runbook.Params) error {
			if errs := validation.IsDNS1123Subdomain(p.String("name")); len(errs) > 0 {
				return fmt.Errorf("name %q: %s", p.String("name"), errs[0])
			}
			if errs := validation.IsConfigMapKey(secretKey(p)); len(errs) > 0 {
				return fmt.Errorf("key %q: %s", secretKey(p), errs[0])
			}
			if n := p.Int("bytes"); n < minSecretBytes || n > maxSecretBytes {
				return fmt.Errorf("bytes is %d: want %d to %d", n, minSecretBytes, maxSecretBytes)
			}
			return nil
		},
	}
}

func secretKey(p runbook.Params) string { return p.String("key") }

func (SecretRotate) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	var perms []kube.Permission
	for _, verb := range []string{"get", "create", "update"} {
		perms = append(perms, kube.Permission{Verb: verb, Resource: "secrets", Namespace: ns})
	}
	// The workloads whose pod templates read the Secret, for the plan.
	for _, r := range []string{"deployments", "statefulsets", "daemonsets"} {
		perms = append(perms, kube.Permission{Verb: "list", Group: "apps", Resource: r, Namespace: ns})
	}
	return append(perms, kube.Permission{Verb: "list", Group: "batch", Resource: "cronjobs", Namespace: ns})
}

// fingerprintOf fingerprints the key's current value, if it has one.
func fingerprintOf(env *action.Env, s *corev1.Secret, key string) (string, error) {
	if s == nil {
		return "none", nil
	}
	v, ok := s.Data[key]
	if !ok {
		return "none", nil
	}
	return env.Fingerprint(v)
}

func (SecretRotate) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns, name, key := p.String("namespace"), p.String("name"), secretKey(p)
	where := ns + "/" + name
	cur, getErr := c.Core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	consumers, err := SecretConsumers(ctx, c, ns, name, key)
	if err != nil {
		return nil, err
	}
	readers := consumerWarnings(where, consumers)
	err = getErr
	if apierrors.IsNotFound(err) {
		return &action.Plan{
			Summary:  fmt.Sprintf("create Secret %s with a new random key %q", where, key),
			Targets:  []string{"secret/" + where},
			Count:    1,
			Warnings: readers,
		}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get Secret %s: %s", where, kube.Short(err))
	}
	if cur.Immutable != nil && *cur.Immutable {
		return nil, fmt.Errorf("Secret %s is immutable: it can only be deleted and created again, which irctl leaves to you", where)
	}
	fp, err := fingerprintOf(env, cur, key)
	if err != nil {
		return nil, err
	}
	if p.Bool("once_per_incident") && env.Incident != "" && cur.Annotations[RotatedForIncident] == env.Incident {
		return &action.Plan{
			Summary: fmt.Sprintf("Secret %s was already rotated for incident %s (key %q is %s)", where, env.Incident, key, fp),
			Noop:    true,
		}, nil
	}
	plan := &action.Plan{
		Summary:  fmt.Sprintf("replace key %q of Secret %s (now %s) with a new random value", key, where, fp),
		Targets:  []string{"secret/" + where},
		Count:    1,
		Warnings: readers,
	}
	var others []string
	for k := range cur.Data {
		if k != key {
			others = append(others, k)
		}
	}
	if len(others) > 0 {
		sort.Strings(others)
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("the Secret's other keys (%s) are kept as they are: rotate them too if they were exposed", strings.Join(others, ", ")))
	}
	return plan, nil
}

func (SecretRotate) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns, name, key := p.String("namespace"), p.String("name"), secretKey(p)
	where := ns + "/" + name
	raw := make([]byte, p.Int("bytes"))
	_, _ = rand.Read(raw) // never fails: it crashes the program instead
	value := []byte(base64.StdEncoding.EncodeToString(raw))
	clear(raw)

	newFP, err := env.Fingerprint(value)
	if err != nil {
		return nil, err
	}
	// The new value is 64 random bytes: a Secret holding it is irctl's own
	// write, found again after a lost response, an AlreadyExists from a
	// create that had reached the server, or a conflict after an update
	// that had. It is never rotated a second time.
	prev, created, err := writeSecretKey(ctx, env, c, ns, name, key, value, true)
	if err != nil {
		return nil, fmt.Errorf("rotate Secret %s: %s", where, kube.Short(err))
	}
	summary := fmt.Sprintf("replaced key %q of Secret %s: %s (was %s)", key, where, newFP, prev)
	if created {
		summary = fmt.Sprintf("created Secret %s with key %q: %s", where, key, newFP)
	}
	return &action.Result{Summary: summary, Changed: 1, Irreversible: "the previous secret value is not kept"}, nil
}

func rotationAnnotations(env *action.Env) map[string]string {
	now := time.Now
	if env.Now != nil {
		now = env.Now
	}
	a := map[string]string{RotatedAt: now().UTC().Format(time.RFC3339Nano)}
	if env.Incident != "" {
		a[RotatedForIncident] = env.Incident
	}
	return a
}
