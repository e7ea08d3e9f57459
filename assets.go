// Package irctl holds the files that are compiled into the irctl binary: the
// shipped runbooks and the sandbox's seed data (schema, rows, CRDs), so that a
// single binary can run a drill without a checkout beside it.
package irctl

import (
	"embed"
	"io/fs"
)

// Runbooks holds runbooks/*.yaml and the manifests their k8s.apply steps
// name (runbooks/manifests).
//
//go:embed runbooks/*.yaml runbooks/manifests
var Runbooks embed.FS

// RunbookDir is the shipped runbooks' directory, where the relative paths
// of their steps resolve.
func RunbookDir() fs.FS {
	sub, err := fs.Sub(Runbooks, "runbooks")
	if err != nil {
		panic(err) // "runbooks" is a valid path: fs.Sub cannot fail
	}
	return sub
}

// SandboxSeed holds testdata/sandbox: schema.sql, seed.sql and crds/*.yaml.
//
//go:embed testdata/sandbox
var SandboxSeed embed.FS

// Scenarios holds testdata/scenarios: the drills `irctl drill` runs.
//
//go:embed testdata/scenarios
var Scenarios embed.FS
