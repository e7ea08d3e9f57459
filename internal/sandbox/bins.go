package sandbox

// Where the sandbox's server binaries are found, and the check that they
// are all there before anything starts.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// EnvBins names the directory holding the sandbox's server binaries
// (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok,
// mailpit, prometheus), overriding the search of DefaultBinDir.
const EnvBins = "IRCTL_SANDBOX_BINS"

// DefaultBinDir returns where the sandbox's server binaries are looked
// for: $IRCTL_SANDBOX_BINS if set; else the bin directory beside the
// running executable's directory (<dir>/../bin, as in a checkout where
// `make` puts irctl and the sandbox binaries in ./bin) if it has
// kube-apiserver; else ./bin relative to the working directory, made
// absolute.
func DefaultBinDir() string {
	if d := os.Getenv(EnvBins); d != "" {
		return d
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			d := filepath.Join(filepath.Dir(exe), "..", "bin")
			if checkExecutable(filepath.Join(d, "kube-apiserver")) == nil {
				return d
			}
		}
	}
	if d, err := filepath.Abs("bin"); err == nil {
		return d
	}
	return "bin"
}

// CheckBins reports whether everything the sandbox runs is installed:
// kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok,
// mailpit and prometheus in binDir, and PostgreSQL's initdb and postgres
// (see EnvPGBin). The error names the missing binary and how to get it.
func CheckBins(binDir string) error {
	all := slices.Concat(controlPlaneBins, clusterBins, notifyBins, monitoringBins)
	for _, name := range all {
		if err := checkExecutable(filepath.Join(binDir, name)); err != nil {
			return fmt.Errorf("sandbox binary %s is missing (%v): run `make sandbox-bins`, or set $%s to a directory holding %s",
				name, err, EnvBins, strings.Join(all, ", "))
		}
	}
	_, err := pgBinDir()
	return err
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// quietControllerRuntime silences controller-runtime's logger, which only
// envtest uses here: unset, it prints a warning with a stack trace to
// stderr on the first log call made 30s after the process started.
var quietControllerRuntime sync.Once
