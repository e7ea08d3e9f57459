package kubeaction

import (
	"context"
	"crypto/subtle"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"

	"irctl.dev/irctl/internal/action"
	"irctl.dev/irctl/internal/kube"
	"irctl.dev/irctl/internal/runbook"
)

// SecretSet writes a value a person obtained - a new LLM provider key,
// issued by the provider's console, which no API of the cluster can mint -
// into one key of a Secret. The value comes from a secret runbook param
// (typed on the terminal without echo, or piped, with --set-stdin), so it
// is never shown, logged or journaled: plans and results carry keyed
// fingerprints only.
//
// It cannot be undone, on purpose: undo would need the previous value,
// the compromised credential, kept in the journal in clear, and putting a
// leaked key back is never the way out of an incident. The previous
// value's fingerprint is recorded, so a later reading of the Secret can be
// checked against both.
type SecretSet struct{}

func (SecretSet) Spec() runbook.Spec {
	return runbook.Spec{
		Name:    "k8s.secret-set",
		Timeout: 5 * time.Minute, // the step's default deadline
		Description: "Write a value a person obtained (a new provider API key; give it with --set-stdin PARAM, not echoed) into one key of a Secret, " +
			"annotated with the incident; only keyed fingerprints are shown or recorded. Cannot be undone: the previous value is not kept.",
		Destructive: true,
		Uses:        []string{runbook.UsesKubernetes},
		Params: []runbook.ParamDef{
			{Name: "namespace", Type: runbook.String, Required: true, Description: "namespace of the Secret"},
			{Name: "name", Type: runbook.String, Required: true, Description: "name of the Secret"},
			{Name: "key", Type: runbook.String, Required: true, Description: "data key to set; other keys are kept"},
			{Name: "value", Type: runbook.String, Required: true, Secret: true, Description: "the new value: a secret runbook param, e.g. \"{{ .new_llm_key }}\" given with --set-stdin new_llm_key"},
			{Name: "create", Type: runbook.Bool, Default: false, Description: "create the Secret if it does not exist (otherwise a missing Secret is an error: a misspelt name would make a Secret nothing reads)"},
		},
		Validate: func(p runbook.Params) error {
			if errs := validation.IsDNS1123Subdomain(p.String("name")); len(errs) > 0 {
				return fmt.Errorf("name %q: %s", p.String("name"), errs[0])
			}
			if errs := validation.IsConfigMapKey(p.String("key")); len(errs) > 0 {
				return fmt.Errorf("key %q: %s", p.String("key"), errs[0])
			}
			if p.String("value") == "" {
				return fmt.Errorf("value is empty")
			}
			return nil
		},
	}
}

func (SecretSet) Permissions(p runbook.Params) []kube.Permission {
	ns := p.String("namespace")
	perms := []kube.Permission{{Verb: "get", Resource: "secrets", Namespace: ns}, {Verb: "update", Resource: "secrets", Namespace: ns}}
	if p.Bool("create") {
		perms = append(perms, kube.Permission{Verb: "create", Resource: "secrets", Namespace: ns})
	}
	// The workloads whose pod templates read the Secret, for the plan.
	for _, r := range []string{"deployments", "statefulsets", "daemonsets"} {
		perms = append(perms, kube.Permission{Verb: "list", Group: "apps", Resource: r, Namespace: ns})
	}
	return append(perms, kube.Permission{Verb: "list", Group: "batch", Resource: "cronjobs", Namespace: ns})
}

func (SecretSet) Plan(ctx context.Context, env *action.Env, p runbook.Params) (*action.Plan, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns, name, key := p.String("namespace"), p.String("name"), p.String("key")
	value := []byte(p.String("value"))
	where := ns + "/" + name
	newFP, err := env.Fingerprint(value)
	if err != nil {
		return nil, err
	}
	cur, err := c.Core.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && !p.Bool("create"):
		return nil, fmt.Errorf("Secret %s does not exist (create: true on the step creates it)", where)
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get Secret %s: %s", where, kube.Short(err))
	case err == nil && cur.Immutable != nil && *cur.Immutable:
		return nil, fmt.Errorf("Secret %s is immutable: it can only be deleted and created again, which irctl leaves to you", where)
	case err == nil && subtle.ConstantTimeCompare(cur.Data[key], value) == 1:
		return &action.Plan{Summary: fmt.Sprintf("key %q of Secret %s already holds the given value (%s)", key, where, newFP), Noop: true}, nil
	}
	consumers, cerr := SecretConsumers(ctx, c, ns, name, key)
	if cerr != nil {
		return nil, cerr
	}
	plan := &action.Plan{Targets: []string{"secret/" + where}, Count: 1, Warnings: consumerWarnings(where, consumers)}
	if err != nil { // not found, create: true
		plan.Summary = fmt.Sprintf("create Secret %s with key %q set to the given value (%s)", where, key, newFP)
		return plan, nil
	}
	prev, err := fingerprintOf(env, cur, key)
	if err != nil {
		return nil, err
	}
	plan.Summary = fmt.Sprintf("set key %q of Secret %s (now %s) to the given value (%s); the previous value is not kept", key, where, prev, newFP)
	return plan, nil
}

func (SecretSet) Apply(ctx context.Context, env *action.Env, p runbook.Params, _ *action.Plan) (*action.Result, error) {
	c, err := env.Kube()
	if err != nil {
		return nil, err
	}
	ns, name, key := p.String("namespace"), p.String("name"), p.String("key")
	value := []byte(p.String("value"))
	where := ns + "/" + name
	newFP, err := env.Fingerprint(value)
	if err != nil {
		return nil, err
	}
	prev, created, err := writeSecretKey(ctx, env, c, ns, name, key, value, p.Bool("create"))
	if err != nil {
		return nil, fmt.Errorf("set key %q of Secret %s: %s", key, where, kube.Short(err))
	}
	summary := fmt.Sprintf("set key %q of Secret %s to %s (was %s)", key, where, newFP, prev)
	if created {
		summary = fmt.Sprintf("created Secret %s with key %q: %s", where, key, newFP)
	}
	return &action.Result{Summary: summary, Changed: 1,
		Irreversible: "the previous value is not kept (only its fingerprint, " + prev + "): a leaked credential is never put back"}, nil
}

// errSecretMissing is a Secret gone between plan and apply, for a step
// that may not create it.
var errSecretMissing = fmt.Errorf("the Secret does not exist (any more)")

// writeSecretKey sets key of Secret ns/name to value, with the rotation
// annotations (rotationAnnotations), creating the Secret when it is
// missing and create allows it. It returns the previous value's
// fingerprint ("none" without one) and whether it created the Secret. A
// conflict or AlreadyExists re-reads and tries again; after an uncertain
// write (a lost response) the Secret is read back, and one that already
// holds value counts as written, never written twice.
func writeSecretKey(ctx context.Context, env *action.Env, c *kube.Clients, ns, name, key string, value []byte, create bool) (prev string, created bool, err error) {
	secrets := c.Core.CoreV1().Secrets(ns)
	dry := kube.DryRunOpt(env.DryRun == action.DryRunServer)
	prev = "none"
	own := func(s *corev1.Secret) bool { return subtle.ConstantTimeCompare(s.Data[key], value) == 1 }
	write := func() error {
		return retry.OnError(retry.DefaultRetry, func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }, func() error {
			cur, err := secrets.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				if !create {
					return errSecretMissing
				}
				created = true
				s := &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: managedByLabel, Annotations: rotationAnnotations(env)},
					Type:       corev1.SecretTypeOpaque,
					Data:       map[string][]byte{key: value},
				}
				_, err = secrets.Create(ctx, s, metav1.CreateOptions{FieldManager: kube.FieldManager, DryRun: dry})
				return err
			}
			if err != nil || own(cur) {
				return err
			}
			created = false
			if prev, err = fingerprintOf(env, cur, key); err != nil {
				return err
			}
			if cur.Data == nil {
				cur.Data = map[string][]byte{}
			}
			cur.Data[key] = value
			if cur.Annotations == nil {
				cur.Annotations = map[string]string{}
			}
			for k, v := range rotationAnnotations(env) {
				cur.Annotations[k] = v
			}
			_, err = secrets.Update(ctx, cur, metav1.UpdateOptions{FieldManager: kube.FieldManager, DryRun: dry})
			return err
		})
	}
	err = kube.Write(ctx, write, func() (bool, error) {
		cur, err := secrets.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && own(cur), err
	})
	return prev, created, err
}
