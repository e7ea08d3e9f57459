// Package irctl holds the files that are compiled into the irctl binary: the
// shipped runbooks and the sandbox's seed data (schema, rows, CRDs), so that a
// single binary can run a drill without a checkout beside it.
package irctl

import "embed"

// Runbooks holds runbooks/*.yaml.
//
//go:embed runbooks/*.yaml
var Runbooks embed.FS

// SandboxSeed holds testdata/sandbox: schema.sql, seed.sql and crds/*.yaml.
//
//go:embed testdata/sandbox
var SandboxSeed embed.FS
