package drill

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Attempt is one request the attacker made.
type Attempt struct {
	Time       time.Time `json:"time"`
	Credential string    `json:"credential"`
	From       string    `json:"from"`
	Status     int       `json:"status"` // 0: no answer
	Error      string    `json:"error,omitempty"`
}

// OK says whether the request got in (2xx).
func (a Attempt) OK() bool { return a.Status >= 200 && a.Status < 300 }

// attacker keeps calling the orchestrator API with each stolen credential,
// every interval, recording every attempt.
type attacker struct {
	mu       sync.Mutex
	attempts []Attempt
	stop     context.CancelFunc
	done     chan struct{}
}

// use is how the attacker uses one credential: the client (the
// kube-apiserver's needs its CA), the URL and the header; or, for what is
// not a request of the attacker's own (a CronJob's schedule), fire.
type use struct {
	name, url, header, value string
	client                   *http.Client
	fire                     func(context.Context) (status int, err error)
}

func startAttacker(ctx context.Context, a Attacker, uses []use, interval time.Duration) *attacker {
	ctx, cancel := context.WithCancel(ctx)
	at := &attacker{stop: cancel, done: make(chan struct{})}
	from := a.From
	if len(from) == 0 {
		from = []string{""}
	}
	go func() {
		defer close(at.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for round := 0; ; round++ {
			for _, u := range uses {
				at.try(ctx, u, from[round%len(from)])
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return at
}

func (at *attacker) try(ctx context.Context, u use, from string) {
	rec := Attempt{Time: time.Now(), Credential: u.name, From: from}
	var err error
	if u.fire != nil {
		rec.From = ""
		rec.Status, err = u.fire(ctx)
	} else {
		err = at.request(ctx, u, from, &rec)
	}
	if err != nil {
		if ctx.Err() != nil {
			return // stopped mid-request: not an attempt
		}
		rec.Error = err.Error()
	}
	at.mu.Lock()
	at.attempts = append(at.attempts, rec)
	at.mu.Unlock()
}

func (at *attacker) request(ctx context.Context, u use, from string, rec *Attempt) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url, nil)
	if err == nil {
		req.Header.Set(u.header, u.value)
		if from != "" {
			req.Header.Set("X-Forwarded-For", from)
		}
		var resp *http.Response
		if resp, err = u.client.Do(req); err == nil {
			rec.Status = resp.StatusCode
			resp.Body.Close()
		}
	}
	return err
}

// Stop ends the attack and returns every attempt.
func (at *attacker) Stop() []Attempt {
	at.stop()
	<-at.done
	at.mu.Lock()
	defer at.mu.Unlock()
	return append([]Attempt(nil), at.attempts...)
}
