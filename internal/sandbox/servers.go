package sandbox

// A record of the sandbox's server processes and data directories, kept in
// the state directory while the sandbox runs, so that Down can end the
// servers and remove their data even when the process that started them
// (`sandbox serve`) was killed without a chance to stop them: they run in
// process groups of their own and outlive it.

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const serversFile = "servers.json"

type serversRecord struct {
	Processes []processRecord `json:"processes"`
	// Dirs are temporary directories holding the servers' data.
	Dirs []string `json:"dirs"`
}

type processRecord struct {
	Name string `json:"name"`
	Pid  int    `json:"pid"`
	// Exe is the program's path as started, the first word of its command
	// line: a recycled pid running something else is left alone.
	Exe string `json:"exe"`
}

// record adds a server process to the record and rewrites it.
func (s *Sandbox) record(name string, pid int, exe string) {
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	s.servers.Processes = append(s.servers.Processes, processRecord{Name: name, Pid: pid, Exe: exe})
	s.writeRecord()
}

// recordDir adds a data directory to the record and rewrites it.
func (s *Sandbox) recordDir(dir string) {
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	s.servers.Dirs = append(s.servers.Dirs, dir)
	s.writeRecord()
}

// recordChildren records the children of this process running one of
// exes (envtest keeps the handles of etcd and kube-apiserver private).
func (s *Sandbox) recordChildren(exes map[string]string) {
	for _, pid := range children(os.Getpid()) {
		exe := commandName(pid)
		for name, path := range exes {
			if exe == path {
				s.record(name, pid, exe)
			}
		}
	}
}

// writeRecord writes the record; the caller holds recordMu. Failing to
// write it only costs the cleanup after a crash, so errors are ignored.
func (s *Sandbox) writeRecord() {
	if s.recordPath == "" {
		return
	}
	data, err := json.MarshalIndent(s.servers, "", "  ")
	if err == nil {
		_ = writeFileAtomic(s.recordPath, append(data, '\n'))
	}
}

// removeRecord deletes the record once the servers have stopped.
func (s *Sandbox) removeRecord() error {
	if s.recordPath == "" {
		return nil
	}
	if err := os.Remove(s.recordPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// sweep ends the processes recorded in dir's servers record that are still
// alive and removes their data directories and the record: after Serve
// stopped them itself there is no record, and nothing to do. It returns the
// names of the servers it had to kill.
func sweep(dir string) ([]string, error) {
	path := filepath.Join(dir, serversFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec serversRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, errors.New(path + ": " + err.Error())
	}
	var killed []string
	var pids []int
	for _, p := range rec.Processes {
		if p.Pid <= 0 || !alive(p.Pid) || commandName(p.Pid) != p.Exe {
			continue
		}
		// Each server leads its own process group, with any workers it
		// started (PostgreSQL's).
		killGroup(p.Pid)
		killPid(p.Pid)
		killed = append(killed, p.Name)
		pids = append(pids, p.Pid)
	}
	var errs []error
	for _, pid := range pids {
		if !waitExit(pid, 5*time.Second) {
			errs = append(errs, errors.New("process "+strconv.Itoa(pid)+" survived SIGKILL"))
		}
	}
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	for _, d := range rec.Dirs {
		// Only what Start makes: a corrupt record must not delete elsewhere.
		if d = filepath.Clean(d); strings.HasPrefix(d, tmp+"irctl-") {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	errs = append(errs, os.Remove(path))
	return killed, errors.Join(errs...)
}

// commandName is the first word of pid's command line ("" if unknown).
func commandName(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	name, _, _ := strings.Cut(string(b), "\x00")
	return name
}
