// Package kube builds irctl's Kubernetes clients (raised rate limits, a user
// agent, field manager "irctl") and checks permissions before any write.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// RoleFile is the shipped ClusterRole that grants what irctl's actions
// need; permission errors point at it.
const RoleFile = "runbooks/rbac/irctl-responder.yaml"

// FieldManager is the field manager of every irctl write.
const FieldManager = "irctl"

// Client-side rate limits. client-go's default of 5 QPS would make
// quarantining a few thousand pods take minutes; the API server's own
// priority and fairness still protects it.
const (
	QPS   = 500
	Burst = 1000
)

// RequestTimeout bounds each API request unless --request-timeout says
// otherwise; streaming calls do not get it (see Clients.Stream).
const RequestTimeout = 60 * time.Second

// requestTimeout is RequestTimeout; tests shorten it.
var requestTimeout = RequestTimeout

// Clients bundles the clients an action may need.
type Clients struct {
	Config  *rest.Config
	Core    kubernetes.Interface
	Dynamic dynamic.Interface
	// Stream is Core without the default RequestTimeout, for calls whose
	// response is a stream that may rightly last longer (container logs):
	// the step's context bounds them. An explicit --request-timeout
	// applies to it too, as kubectl applies it to logs.
	Stream kubernetes.Interface
}

// NewClients builds clients from cfg with irctl's rate limits and user agent.
func NewClients(cfg *rest.Config, userAgent string) (*Clients, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = QPS, Burst
	cfg.UserAgent = userAgent
	cfg.Wrap(WrapNoBlindResend) // writes are retried by Write, after a re-read
	streamCfg := rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = requestTimeout
	}
	// Built-in types travel as protobuf: the API server encodes, and irctl
	// decodes, a pod list or a patched pod several times faster than as
	// JSON, which is most of the cost of quarantining thousands of pods.
	// Config (used for CRDs, which speak only JSON) stays JSON.
	pb := rest.CopyConfig(cfg)
	pb.ContentType = "application/vnd.kubernetes.protobuf"
	pb.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	core, err := kubernetes.NewForConfig(pb)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	stream, err := kubernetes.NewForConfig(streamCfg)
	if err != nil {
		return nil, err
	}
	return &Clients{Config: cfg, Core: core, Dynamic: dyn, Stream: stream}, nil
}

// Ping checks that the API server answers, with a short timeout, and turns
// a connection failure into one line naming the server.
func (c *Clients) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.Core.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return fmt.Errorf("kubernetes API server %s is unreachable: %s", c.Config.Host, Short(err))
	}
	return nil
}

// Short reduces client-go's nested errors to their most useful line.
func Short(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		var oe *net.OpError
		if errors.As(ue.Err, &oe) {
			return oe.Err.Error()
		}
		return ue.Err.Error()
	}
	if s := apierrors.ReasonForError(err); s != metav1.StatusReasonUnknown {
		return err.Error()
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i > 0 && len(msg) > 200 {
		return msg[i+2:]
	}
	return msg
}

// Permission is one verb on one resource that a plan needs.
type Permission struct {
	Verb        string
	Group       string
	Resource    string
	Subresource string
	Namespace   string // "" for cluster-scoped or all namespaces
}

func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	where := "cluster-wide"
	if p.Namespace != "" {
		where = "in namespace " + p.Namespace
	}
	return fmt.Sprintf("%s %s %s", p.Verb, r, where)
}

// Denied is returned by Preflight when permissions are missing.
type Denied struct {
	Missing []Permission
}

func (d *Denied) Error() string {
	parts := make([]string, len(d.Missing))
	for i, p := range d.Missing {
		parts[i] = p.String()
	}
	return "permission preflight: not allowed to " + strings.Join(parts, "; ")
}

// Preflight asks the API server, with one SelfSubjectAccessReview per
// distinct permission, whether the current identity may do everything
// needed. It returns *Denied listing what is missing.
func (c *Clients) Preflight(ctx context.Context, perms []Permission) error {
	var unique []Permission
	seen := map[Permission]bool{}
	for _, p := range perms {
		if !seen[p] {
			seen[p] = true
			unique = append(unique, p)
		}
	}
	// The reviews are independent: ask them all at once (a phase can need
	// a few dozen), 16 at a time.
	allowed := make([]bool, len(unique))
	errs := make([]error, len(unique))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, p := range unique {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: p.Namespace, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource,
				},
			}}
			res, err := c.Core.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("permission preflight (%s): %s", p, Short(err))
				return
			}
			allowed[i] = res.Status.Allowed
		}()
	}
	wg.Wait()
	var missing []Permission
	for i, p := range unique {
		if errs[i] != nil {
			return errs[i]
		}
		if !allowed[i] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].String() < missing[j].String() })
		return &Denied{Missing: missing}
	}
	return nil
}

// DryRunOpt returns the dryRun option value for API writes.
func DryRunOpt(server bool) []string {
	if server {
		return []string{metav1.DryRunAll}
	}
	return nil
}
