package builtin

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"irctl.dev/irctl/internal/runbook"
)

// getters are runbook.Params' methods that take a param name.
var getters = map[string]bool{"Has": true, "String": true, "Int": true, "Bool": true, "Duration": true, "Strings": true,
	"Ints": true, "CIDRs": true, "IPs": true, "Map": true, "Any": true, "With": true}

// undeclaredReads lists, as file:line: name, every p.Getter("name") in the
// Go source src whose name is not in declared. Actions take their params
// as `p runbook.Params`, so a call on an identifier p is a param read.
func undeclaredReads(t *testing.T, fset *token.FileSet, f *ast.File, declared map[string]bool) []string {
	t.Helper()
	var bad []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !getters[sel.Sel.Name] {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "p" {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		if !declared[name] {
			bad = append(bad, fset.Position(lit.Pos()).String()+": "+name)
		}
		return true
	})
	return bad
}

// TestEveryParamReadIsDeclared is the registry-wide check behind the
// getters' panic: every param name an action package reads, on any code
// path (tested or not), is declared by one of that package's actions.
func TestEveryParamReadIsDeclared(t *testing.T) {
	declared := map[string]map[string]bool{} // package dir -> names
	dirOf := map[string]string{"k8s": "kubeaction", "sql": "sqlaction", "prom": "promaction", "http": "httpaction", "notify": "notifyaction"}
	// Actions that live outside their prefix's package.
	pkgOf := map[string]string{"sql.rotate-password": "credaction", "manual": "manual"}
	r := Registry()
	for _, n := range r.Names() {
		spec, _ := r.Spec(n)
		prefix, _, _ := strings.Cut(n, ".")
		dir, ok := dirOf[prefix]
		if d, own := pkgOf[n]; own {
			dir, ok = d, true
		}
		if !ok {
			t.Fatalf("action %s: which package is it in?", n)
		}
		if declared[dir] == nil {
			declared[dir] = map[string]bool{}
		}
		for _, d := range spec.Params {
			declared[dir][d.Name] = true
		}
	}
	reads := 0
	for dir, names := range declared {
		files, _ := filepath.Glob(filepath.Join("..", dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range undeclaredReads(t, fset, f, names) {
				t.Errorf("%s is not a param of any %s action", b, dir)
			}
			all := map[string]bool{}
			reads += len(undeclaredReads(t, fset, f, all)) // every read, counted
		}
	}
	if reads < 50 {
		t.Errorf("found only %d param reads: is the scan still looking at the actions?", reads)
	}
}

// The scan catches a typo'd key.
func TestUndeclaredReadsCatchesATypo(t *testing.T) {
	const src = `package x
func plan(p runbook.Params) { _ = p.String("namespace"); _ = p.String("namspace") }`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	bad := undeclaredReads(t, fset, f, map[string]bool{"namespace": true})
	if len(bad) != 1 || !strings.HasSuffix(bad[0], ": namspace") {
		t.Errorf("got %v, want the one read of namspace", bad)
	}
}

// Every spec is sound (NewRegistry also panics on one that is not) and
// states its defaults in the schema, not only in prose.
func TestSpecsDeclareDefaultsInTheSchema(t *testing.T) {
	r := Registry()
	for _, n := range r.Names() {
		spec, _ := r.Spec(n)
		if err := spec.Check(); err != nil {
			t.Error(err)
		}
		for _, d := range spec.Params {
			if strings.Contains(d.Description, "(default") || strings.Contains(d.Description, "default ") {
				t.Errorf("%s param %s: a default in the description (%q): put it in ParamDef.Default", n, d.Name, d.Description)
			}
		}
		// Every action binds its own spec with only the required params.
		req := map[string]any{}
		for _, d := range spec.Params {
			if d.Required {
				req[d.Name] = placeholder(d.Type)
			}
		}
		if _, err := spec.Bind(req); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func placeholder(t runbook.Type) any {
	switch t {
	case runbook.Int:
		return int64(1)
	case runbook.Bool:
		return true
	case runbook.Duration:
		return "1h"
	case runbook.Strings:
		return []string{"x"}
	case runbook.Map:
		return map[string]string{"a": "b"}
	}
	return "x"
}
