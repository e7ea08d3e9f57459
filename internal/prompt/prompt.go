// Package prompt asks the operator to confirm destructive steps. There is
// one rule for interactivity: prompt only when stdin and stderr are
// terminals (stdout stays clean for results); otherwise destructive steps
// need --yes.
package prompt

import (
	"context"
	"errors"
	"io"
	"os"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/huh"
	"golang.org/x/term"
)

// ErrNoTerminal is returned when a confirmation is needed but nobody can be
// asked.
var ErrNoTerminal = errors.New("no terminal to confirm on")

// Prompter asks yes/no questions; the default answer is always "no".
type Prompter interface {
	// Confirm asks; a cancelled ctx (SIGTERM, SIGHUP) ends the question
	// with ctx's error, never with consent.
	Confirm(ctx context.Context, title, detail string) (bool, error)
	// CanConfirm says whether anybody can be asked, so that a run that
	// would need to ask is refused before its first step, not halfway.
	CanConfirm() bool
}

// CanPrompt reports whether in and out are both terminals.
func CanPrompt(in io.Reader, out io.Writer) bool {
	fi, ok1 := in.(*os.File)
	fo, ok2 := out.(*os.File)
	return ok1 && ok2 && term.IsTerminal(int(fi.Fd())) && term.IsTerminal(int(fo.Fd()))
}

// New returns a huh prompter on in/out when both are terminals, and a
// prompter that always fails with ErrNoTerminal otherwise.
func New(in io.Reader, out io.Writer) Prompter {
	if !CanPrompt(in, out) {
		return noTerminal{}
	}
	return &huhPrompter{in: in, out: out}
}

type noTerminal struct{}

func (noTerminal) Confirm(context.Context, string, string) (bool, error) {
	return false, ErrNoTerminal
}
func (noTerminal) CanConfirm() bool { return false }

type huhPrompter struct {
	in  io.Reader
	out io.Writer
}

// CanConfirm is true: in and out are terminals.
func (p *huhPrompter) CanConfirm() bool { return true }

// Confirm shows a huh Confirm defaulting to "No". Ctrl-C or Esc counts as
// "no", never as an error that could be mistaken for consent.
func (p *huhPrompter) Confirm(ctx context.Context, title, detail string) (bool, error) {
	ok := false
	c := huh.NewConfirm().Title(title).Affirmative("Yes").Negative("No").Value(&ok)
	if detail != "" {
		c = c.Description(detail)
	}
	// Signals are irctl's to handle (they cancel ctx, which ends the
	// form): bubbletea's own handler, racing ours, can hang the form's
	// shutdown after a SIGTERM.
	err := huh.NewForm(huh.NewGroup(c)).
		WithProgramOptions(tea.WithReportFocus(), tea.WithoutSignalHandler()).
		WithInput(p.in).WithOutput(p.out).WithShowHelp(true).RunWithContext(ctx)
	if ctx.Err() != nil {
		return false, ctx.Err() // whatever was pressed meanwhile
	}
	if errors.Is(err, huh.ErrUserAborted) || errors.Is(err, huh.ErrTimeout) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return ok, nil
}
