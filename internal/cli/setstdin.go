package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"irctl.dev/irctl/internal/exitcode"
	"irctl.dev/irctl/internal/runbook"
)

// --set-stdin NAME gives a secret runbook param from stdin rather than the
// command line, where it would stay in the shell's history and in every
// process listing: a new provider API key a person has just obtained. On a
// terminal irctl asks for each value without echoing it; otherwise it reads
// one line per name, in the order the names were given. The values then
// flow like --set ones: redacted in output, logs and the journal, and asked
// for again by resume.

// readSetStdin checks the --set-stdin names against the runbook ref (each
// a declared secret param, not also given with --set), reads their values
// and adds them to the --set values. It does so once per process.
func (f *factory) readSetStdin(ctx context.Context, ref string) error {
	if len(f.setStdin) == 0 || f.stdinDone {
		return nil
	}
	f.stdinDone = true
	file, data, err := f.readRunbook(ref)
	if err != nil {
		return err
	}
	// Loaded without --set, only to learn the params: a runbook that does
	// not load is refused before anybody is asked for a secret.
	rb, err := runbook.Load(file, data, runbook.Options{Catalog: f.registry, Incident: f.incidentID})
	if err != nil {
		return exitcode.Wrap(exitcode.Usage, err)
	}
	params := map[string]runbook.Param{}
	for _, p := range rb.Params {
		params[p.Name] = p
	}
	given := f.setValues()
	seen := map[string]bool{}
	for _, name := range f.setStdin {
		p, ok := params[name]
		switch {
		case seen[name]:
			return usage("--set-stdin %s is given twice", name)
		case !ok:
			return usage("--set-stdin %s: runbook %s has no param %q", name, rb.File, name)
		case !p.Secret:
			return usage("--set-stdin %s: param %s of runbook %s is not secret (secret: true): give it with --set %s=...", name, name, rb.File, name)
		}
		if _, dup := given[name]; dup {
			return usage("--set-stdin %s and --set %s=... both given: use one", name, name)
		}
		seen[name] = true
	}
	values, err := f.readSecretValues(ctx)
	if err != nil {
		return err
	}
	for i, name := range f.setStdin {
		f.secrets.Add(values[i])
		f.set = append(f.set, name+"="+values[i])
	}
	return nil
}

// readSecretValues reads one value per --set-stdin name: asked for on a
// terminal without echo, else a line each from stdin (its line ending
// removed). An empty value is refused.
func (f *factory) readSecretValues(ctx context.Context) ([]string, error) {
	values := make([]string, 0, len(f.setStdin))
	if fi, ok := f.io.In.(*os.File); ok && term.IsTerminal(int(fi.Fd())) {
		for _, name := range f.setStdin {
			fmt.Fprintf(f.io.ErrOut, "%s (secret, not echoed): ", name)
			v, err := readPassword(ctx, int(fi.Fd()))
			fmt.Fprintln(f.io.ErrOut)
			if err != nil {
				return nil, err
			}
			if v == "" {
				return nil, usage("--set-stdin %s: the value typed is empty", name)
			}
			values = append(values, v)
		}
		return values, nil
	}
	r := bufio.NewReader(f.io.In)
	for _, name := range f.setStdin {
		line, err := r.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("--set-stdin %s: reading stdin: %w", name, err)
		}
		if err != nil && line == "" {
			return nil, usage("--set-stdin %s: stdin ended before its value (one line per --set-stdin name, in the order given)", name)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			return nil, usage("--set-stdin %s: its line on stdin is empty", name)
		}
		values = append(values, line)
	}
	return values, nil
}

// readPassword reads a line from the terminal fd without echo. A
// cancelled ctx (Ctrl-C) puts the terminal back as it was and returns at
// once; the read itself cannot be interrupted, and ends with the process.
func readPassword(ctx context.Context, fd int) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", err
	}
	type read struct {
		b   []byte
		err error
	}
	ch := make(chan read, 1)
	go func() {
		b, err := term.ReadPassword(fd)
		ch <- read{b, err}
	}()
	select {
	case r := <-ch:
		return string(r.b), r.err
	case <-ctx.Done():
		_ = term.Restore(fd, state)
		return "", exitcode.Wrap(exitcode.Interrupted, context.Cause(ctx))
	}
}
