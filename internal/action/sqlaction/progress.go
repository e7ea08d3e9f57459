package sqlaction

import "irctl.dev/irctl/internal/progress"

// rowProgress counts the CSV records written into the step's progress,
// every progressEvery rows: COPY writes one row at a time.
type rowProgress struct {
	nw   *CSVNeutraliser
	c    *progress.Counter
	last int64
}

const progressEvery = 1024

func (r *rowProgress) Write(b []byte) (int, error) {
	n, err := r.nw.Write(b)
	if got := r.nw.Records(); got-r.last >= progressEvery {
		r.c.Add(got - r.last)
		r.last = got
	}
	return n, err
}
