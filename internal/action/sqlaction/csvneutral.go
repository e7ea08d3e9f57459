package sqlaction

import (
	"bytes"
	"encoding/binary"
	"io"
)

// NeutraliseCell prefixes a single quote to a cell beginning with = + - @,
// tab or CR, so a spreadsheet shows it as text instead of evaluating it.
func NeutraliseCell(s string) string {
	if s != "" && dangerous[s[0]] {
		return "'" + s
	}
	return s
}

// CSVNeutraliser rewrites an RFC 4180 CSV stream (as COPY ... WITH
// (FORMAT csv) writes it) on the fly, prefixing a single quote to every
// cell, quoted or not, whose content begins with = + - @, tab or CR. It
// follows quoting across Write calls, so quoted cells with commas, quotes
// and line breaks pass through intact, and it counts records. The output
// is the input with those quotes inserted: it is copied in spans, not
// byte by byte.
type CSVNeutraliser struct {
	w           io.Writer
	out         []byte
	state       csvState
	records     int64
	neutralised int64
	last        byte // the last input byte
	err         error
}

type csvState uint8

const (
	stFieldStart    csvState = iota // at the start of a field
	stUnquoted                      // inside an unquoted field
	stQuotedStart                   // just after a field's opening quote
	stQuoted                        // inside a quoted field
	stQuoteInQuoted                 // saw a quote inside a quoted field: an escaped quote or the end
	stCRAtStart                     // held back a CR at the start of a field: CRLF, or a cell beginning with CR
	stCR                            // saw CR after a field's content: CRLF, or a stray CR
)

const csvFlushAt = 128 << 10

// NewCSVNeutraliser writes the neutralised stream to w.
func NewCSVNeutraliser(w io.Writer) *CSVNeutraliser {
	return &CSVNeutraliser{w: w, out: make([]byte, 0, asyncBuf)}
}

// Records is the number of records seen (the header included).
func (c *CSVNeutraliser) Records() int64 { return c.records }

// Neutralised is the number of cells prefixed.
func (c *CSVNeutraliser) Neutralised() int64 { return c.neutralised }

var (
	// dangerous are the first bytes of a cell a spreadsheet would evaluate.
	dangerous = [256]bool{'=': true, '+': true, '-': true, '@': true, '\t': true, '\r': true}
	// endsUnquoted are the bytes that end an unquoted field.
	endsUnquoted = [256]bool{',': true, '\n': true, '\r': true}
	// fieldStartSpecial are the first bytes of a field that need a look.
	fieldStartSpecial = [256]bool{',': true, '\n': true, '\r': true, '"': true, '=': true, '+': true, '-': true, '@': true, '\t': true}
)

// unquotedRun returns the length of p's prefix free of comma, LF and CR,
// eight bytes at a time: the bulk of an export is unquoted cells.
func unquotedRun(p []byte) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	j := 0
	for ; j+8 <= len(p); j += 8 {
		w := binary.LittleEndian.Uint64(p[j:])
		// A zero byte in w^(lo*c) marks a byte equal to c.
		a, b, c := w^(lo*','), w^(lo*'\n'), w^(lo*'\r')
		if ((a-lo)&^a|(b-lo)&^b|(c-lo)&^c)&hi != 0 {
			break
		}
	}
	for j < len(p) && !endsUnquoted[p[j]] {
		j++
	}
	return j
}

// Write rewrites p; it always consumes all of p unless the underlying
// writer fails.
func (c *CSVNeutraliser) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if len(p) > 0 {
		c.last = p[len(p)-1]
	}
	start := 0 // p[start:i] is output not yet copied
	i := 0
	for i < len(p) {
		switch c.state {
		case stUnquoted:
			i += unquotedRun(p[i:])
			if i == len(p) {
				break
			}
			switch p[i] {
			case ',':
				c.state = stFieldStart
			case '\n':
				c.records++
				c.state = stFieldStart
			case '\r':
				c.state = stCR
			}
			i++
		case stQuoted:
			j := bytes.IndexByte(p[i:], '"')
			if j < 0 {
				i = len(p)
				break
			}
			i += j + 1
			c.state = stQuoteInQuoted
		case stFieldStart:
			b := p[i]
			switch {
			case !fieldStartSpecial[b]:
				c.state = stUnquoted
			case b == '"':
				c.state = stQuotedStart
			case b == ',':
			case b == '\n':
				c.records++
			case b == '\r':
				// Hold the CR back until the next byte says what it is.
				c.out = append(c.out, p[start:i]...)
				start = i + 1
				c.state = stCRAtStart
			default: // dangerous
				c.out = append(c.out, p[start:i]...)
				c.out = append(c.out, '\'')
				start = i
				c.neutralised++
				c.state = stUnquoted
			}
			i++
		case stQuotedStart:
			b := p[i]
			switch {
			case b == '"':
				c.state = stQuoteInQuoted
			case dangerous[b]:
				c.out = append(c.out, p[start:i]...)
				c.out = append(c.out, '\'')
				start = i
				c.neutralised++
				c.state = stQuoted
			default:
				c.state = stQuoted
			}
			i++
		case stQuoteInQuoted:
			switch p[i] {
			case '"': // an escaped quote
				c.state = stQuoted
			case ',':
				c.state = stFieldStart
			case '\n':
				c.records++
				c.state = stFieldStart
			case '\r':
				c.state = stCR
			default: // not RFC 4180; pass it through
				c.state = stUnquoted
			}
			i++
		case stCRAtStart:
			// start == i: the held CR is in no span.
			if p[i] == '\n' {
				c.out = append(c.out, '\r') // CRLF: the LF follows in the span
				c.records++
				c.state = stFieldStart
				i++
				break
			}
			// A cell beginning with a bare CR; p[i] is its next byte.
			c.out = append(c.out, '\'', '\r')
			c.neutralised++
			c.state = stUnquoted
		case stCR:
			if p[i] == '\n' {
				c.records++
				c.state = stFieldStart
				i++
				break
			}
			c.state = stUnquoted // a stray CR inside the field; p[i] continues it
		}
	}
	c.out = append(c.out, p[start:]...)
	if len(c.out) >= csvFlushAt {
		if err := c.flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// swapper is a writer that takes a full buffer and gives back an empty
// one (asyncWriter), sparing a copy.
type swapper interface {
	Swap([]byte) ([]byte, error)
}

func (c *CSVNeutraliser) flush() error {
	if len(c.out) == 0 {
		return nil
	}
	var err error
	if sw, ok := c.w.(swapper); ok {
		c.out, err = sw.Swap(c.out)
	} else {
		_, err = c.w.Write(c.out)
	}
	c.out = c.out[:0]
	if err != nil {
		c.err = err
	}
	return err
}

// Close ends the stream: a held-back CR is written, a last record without
// a line break is counted, and everything is flushed. It does not close
// the underlying writer.
func (c *CSVNeutraliser) Close() error {
	switch c.state {
	case stCRAtStart:
		c.out = append(c.out, '\r')
		c.records++
	case stCR:
		c.records++
	case stUnquoted, stQuoteInQuoted, stQuoted, stQuotedStart:
		c.records++
	case stFieldStart:
		if c.last == ',' { // a last record ending in an empty field
			c.records++
		}
	}
	c.state = stFieldStart
	return c.flush()
}
