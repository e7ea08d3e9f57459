package action

import (
	"context"
	"fmt"
	"sync"
)

// ForEach calls fn(i) for i in [0,n) on up to workers goroutines and waits.
// Once ctx is done no new calls start; calls in flight see ctx themselves.
func ForEach(ctx context.Context, workers, n int, fn func(i int)) {
	if workers > n {
		workers = n
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}

// Abbreviate keeps the first max items of a target list and says how many
// more there are, so a plan over 2,000 pods stays readable.
func Abbreviate(items []string, max int) []string {
	if len(items) <= max {
		return items
	}
	out := append([]string(nil), items[:max]...)
	return append(out, fmt.Sprintf("... and %d more", len(items)-max))
}
