package kube

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// TestClientsDoNotResendWrites: client-go by itself repeats any request
// whose 500 carries Retry-After; through NewClients a write is sent once
// and its error returned, while a read is still retried.
func TestClientsDoNotResendWrites(t *testing.T) {
	var posts, gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.Method {
		case http.MethodPost:
			posts.Add(1)
		case http.MethodGet:
			if gets.Add(1) > 1 {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"ns"}}`))
				return
			}
		}
		w.Header().Set("Retry-After", "0")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"InternalError","code":500,"message":"boom"}`))
	}))
	defer srv.Close()
	c, err := NewClients(&rest.Config{Host: srv.URL}, "irctl-test")
	if err != nil {
		t.Fatal(err)
	}
	secrets := c.Core.CoreV1().Secrets("ns")
	_, err = secrets.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{})
	if !apierrors.IsInternalError(err) || posts.Load() != 1 {
		t.Errorf("create: %d requests, error %v; want 1 request and the 500", posts.Load(), err)
	}
	if !Uncertain(err) {
		t.Errorf("a 500 on a write is uncertain: %v", err)
	}
	if _, err := secrets.Get(t.Context(), "s", metav1.GetOptions{}); err != nil || gets.Load() != 2 {
		t.Errorf("get: %d requests, %v; want the 500 retried once", gets.Load(), err)
	}
}

func TestWriteReadsBackBeforeRetrying(t *testing.T) {
	ctx := context.Background()
	lost := apierrors.NewInternalError(errors.New("response lost"))
	var log []string

	// The write reached the server; the read finds it: sent once.
	err := Write(ctx, func() error { log = append(log, "write"); return lost },
		func() (bool, error) { log = append(log, "read"); return true, nil })
	if err != nil || strings.Join(log, ",") != "write,read" {
		t.Errorf("lost response: %v, %v", err, log)
	}

	// The write did not reach the server: read, then written again.
	log, n := nil, 0
	err = Write(ctx, func() error {
		log = append(log, "write")
		if n++; n == 1 {
			return lost
		}
		return nil
	}, func() (bool, error) { log = append(log, "read"); return false, nil })
	if err != nil || strings.Join(log, ",") != "write,read,write" {
		t.Errorf("failed write: %v, %v", err, log)
	}

	// A certain failure (403, 422, ...) is returned at once.
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("no"))
	log = nil
	err = Write(ctx, func() error { log = append(log, "write"); return forbidden }, func() (bool, error) { return false, nil })
	if !apierrors.IsForbidden(err) || len(log) != 1 {
		t.Errorf("forbidden: %v, %v", err, log)
	}

	// A read that finds the object replaced ends it with that error.
	replaced := errors.New("replaced")
	err = Write(ctx, func() error { return lost }, func() (bool, error) { return false, replaced })
	if !errors.Is(err, replaced) {
		t.Errorf("replaced: %v", err)
	}
}

// TestWriteStopsAtTheDeadline: a server that keeps answering 429 is asked
// again only while the step's deadline allows the wait it asks for.
func TestWriteStopsAtTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	writes := 0
	start := time.Now()
	err := Write(ctx, func() error { writes++; return apierrors.NewTooManyRequests("slow down", 1) }, func() (bool, error) { return false, nil })
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("want the last 429, got %v", err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond || writes != 2 {
		t.Errorf("%d writes in %s; want 2 (one wait of 1s fits in the 1.5s deadline, a second does not) and no wait past the deadline", writes, el)
	}

	// Without a deadline it gives up after WriteAttempts writes.
	defer func(b, c time.Duration) { backoffBase, backoffCap = b, c }(backoffBase, backoffCap)
	backoffBase, backoffCap = time.Millisecond, 10*time.Millisecond
	old := time.Now()
	writes = 0
	err = Write(context.Background(), func() error { writes++; return apierrors.NewInternalError(errors.New("x")) }, nil)
	if err == nil || writes != WriteAttempts {
		t.Errorf("%d writes (%v) in %s, want %d", writes, err, time.Since(old), WriteAttempts)
	}
}
