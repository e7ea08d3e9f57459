package sqlaction

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// neutralise runs the streaming rewriter over in, written in chunks of
// the given sizes (cycled), and returns the output and record count.
func neutralise(t testing.TB, in string, chunks ...int) (string, int64, int64) {
	t.Helper()
	var out bytes.Buffer
	n := NewCSVNeutraliser(&out)
	if len(chunks) == 0 {
		chunks = []int{len(in) + 1}
	}
	for i, k := 0, 0; i < len(in); k++ {
		size := max(chunks[k%len(chunks)], 1)
		j := min(i+size, len(in))
		if w, err := n.Write([]byte(in[i:j])); err != nil || w != j-i {
			t.Fatalf("write: %d, %v", w, err)
		}
		i = j
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String(), n.Records(), n.Neutralised()
}

func TestCSVNeutraliserCases(t *testing.T) {
	cases := []struct {
		name, in, out   string
		records, neutra int64
	}{
		{"formulas unquoted", "a,b\n=1+2,+x\n-3,@SUM(A1)\n", "a,b\n'=1+2,'+x\n'-3,'@SUM(A1)\n", 3, 4},
		{"formula quoted", "\"=HYPERLINK(\"\"http://x\"\")\",ok\n", "\"'=HYPERLINK(\"\"http://x\"\")\",ok\n", 1, 1},
		{"multi-line quoted cell", "\"line1\n=line2, still\",x\n", "\"line1\n=line2, still\",x\n", 1, 0},
		{"multi-line cell starting with a formula", "\"=a\nb\",\"+c\n\"\n", "\"'=a\nb\",\"'+c\n\"\n", 1, 2},
		{"escaped quote first", "\"\"\"=x\"\"\",y\n", "\"\"\"=x\"\"\",y\n", 1, 0},
		{"empty fields", ",,\n\"\",\n", ",,\n\"\",\n", 2, 0},
		{"tab and CR starts", "\tx,\"\ry\"\n", "'\tx,\"'\ry\"\n", 1, 2},
		{"CRLF records", "a,b\r\n-1,2\r\n", "a,b\r\n'-1,2\r\n", 2, 1},
		{"bare CR cell", "\rx,y\n", "'\rx,y\n", 1, 1},
		{"middle characters untouched", "a=b,c+d,e-f,g@h\n", "a=b,c+d,e-f,g@h\n", 1, 0},
		{"no final newline", "a,b\n=c", "a,b\n'=c", 2, 1},
		{"final empty field", "a,", "a,", 1, 0},
		{"quote after comma in quoted", "\"a,\"\"=b\",c\n", "\"a,\"\"=b\",c\n", 1, 0},
		{"jsonb cell", "1,\"{\"\"a\"\": -1}\"\n", "1,\"{\"\"a\"\": -1}\"\n", 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, recs, neu := neutralise(t, c.in)
			if out != c.out || recs != c.records || neu != c.neutra {
				t.Fatalf("got %q (%d records, %d neutralised)\nwant %q (%d, %d)", out, recs, neu, c.out, c.records, c.neutra)
			}
			// Any split of the stream gives the same output.
			for size := 1; size <= len(c.in); size++ {
				if got, _, _ := neutralise(t, c.in, size); got != c.out {
					t.Fatalf("chunks of %d: %q", size, got)
				}
			}
			for split := 1; split < len(c.in); split++ {
				if got, _, _ := neutralise(t, c.in, split, len(c.in)); got != c.out {
					t.Fatalf("split at %d: %q", split, got)
				}
			}
		})
	}
}

func TestNeutraliseCell(t *testing.T) {
	for in, want := range map[string]string{"=1": "'=1", "+1": "'+1", "-1": "'-1", "@a": "'@a", "\tx": "'\tx", "\rx": "'\rx", "": "", "a=1": "a=1", "'=1": "'=1"} {
		if got := NeutraliseCell(in); got != want {
			t.Errorf("NeutraliseCell(%q) = %q, want %q", in, got, want)
		}
	}
}

// randomCell draws cells rich in what CSV must quote and what must be
// neutralised (no CR LF pair: encoding/csv reads one in a quoted field as LF).
func randomCell(r *rand.Rand) string {
	alphabet := []string{"a", "b", "1", ",", "\"", "\n", "=", "+", "-", "@", "\t", " ", "'", "é"}
	var b strings.Builder
	for range r.IntN(8) {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// TestCSVNeutraliserMatchesCellRule writes random records with
// encoding/csv, streams them through the rewriter in random chunks, and
// reads them back: every cell must equal NeutraliseCell of the original.
func TestCSVNeutraliserMatchesCellRule(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 2))
	for iter := range 300 {
		var in bytes.Buffer
		w := csv.NewWriter(&in)
		w.UseCRLF = iter%2 == 1
		var records [][]string
		for range 1 + r.IntN(20) {
			rec := make([]string, 1+r.IntN(5))
			for i := range rec {
				rec[i] = randomCell(r)
			}
			if len(rec) == 1 && rec[0] == "" {
				rec[0] = "x" // encoding/csv writes a lone empty field as an empty line
			}
			records = append(records, rec)
			w.Write(rec)
		}
		w.Flush()
		out, recs, _ := neutralise(t, in.String(), 1+r.IntN(7), 1+r.IntN(100))
		if recs != int64(len(records)) {
			t.Fatalf("counted %d records, wrote %d:\n%q", recs, len(records), in.String())
		}
		rd := csv.NewReader(strings.NewReader(out))
		rd.FieldsPerRecord = -1
		got, err := rd.ReadAll()
		if err != nil {
			t.Fatalf("output is not CSV: %v\n%q", err, out)
		}
		for i, rec := range records {
			for j, cell := range rec {
				// What the rewriter sees is the cell as written: with
				// UseCRLF, encoding/csv writes LF in a cell as CR LF, and
				// reads CR LF back as LF.
				wire := cell
				if w.UseCRLF {
					wire = strings.ReplaceAll(cell, "\n", "\r\n")
				}
				want := strings.ReplaceAll(NeutraliseCell(wire), "\r\n", "\n")
				if got[i][j] != want {
					t.Fatalf("record %d cell %d: %q, want %q\ninput %q", i, j, got[i][j], want, in.String())
				}
			}
		}
	}
}

// FuzzCSVNeutraliser checks that chunking never changes the output, and
// that whenever the input is CSV the output is the same CSV with only the
// neutralised cells changed.
func FuzzCSVNeutraliser(f *testing.F) {
	for _, s := range []string{"a,b\n=1,2\n", "\"=x\ny\",\"\"\"\"\n", "\r\n\r", "-1\r\n+2", ",,\"", "\"a\"b,c\n"} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, in string, chunk int) {
		whole, recs, _ := neutralise(t, in)
		if parts, _, _ := neutralise(t, in, 1+abs(chunk)%17); parts != whole {
			t.Fatalf("chunked output differs:\n%q\n%q", parts, whole)
		}
		if strings.Contains(in, "\r") {
			return // encoding/csv rewrites CR LF, so cells are not comparable
		}
		sr := csv.NewReader(strings.NewReader(in))
		sr.FieldsPerRecord = -1
		src, err := sr.ReadAll()
		if err != nil {
			return
		}
		r := csv.NewReader(strings.NewReader(whole))
		r.FieldsPerRecord = -1
		got, err := r.ReadAll()
		if err != nil {
			t.Fatalf("CSV input %q gave non-CSV output %q: %v", in, whole, err)
		}
		if int64(len(src)) > recs || len(got) != len(src) {
			t.Fatalf("%d records in, %d out, counted %d", len(src), len(got), recs)
		}
		for i := range src {
			for j := range src[i] {
				if got[i][j] != NeutraliseCell(src[i][j]) {
					t.Fatalf("cell %d,%d: %q from %q", i, j, got[i][j], src[i][j])
				}
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestBuildExportSQLRendersOnlyQuotedNamesAndAnInteger(t *testing.T) {
	count, cp := BuildExportSQL(pgx.Identifier{"public", "audit_events"}, "timestamp", []string{"id", "ip_address"}, 7*24*time.Hour+time.Second/2)
	wantFrom := `FROM "public"."audit_events" WHERE "timestamp" > now() - make_interval(secs => 604800)`
	if count != "SELECT count(*) "+wantFrom {
		t.Errorf("count: %s", count)
	}
	if cp != fmt.Sprintf(`COPY (SELECT "id", "ip_address" %s ORDER BY "timestamp") TO STDOUT WITH (FORMAT csv, HEADER)`, wantFrom) {
		t.Errorf("copy: %s", cp)
	}
	for _, bad := range []string{"audit_events; DROP TABLE users", `a"b`, "a.b.c", "", "1abc"} {
		if _, err := splitIdent(bad); err == nil {
			t.Errorf("identifier %q accepted", bad)
		}
	}
}
