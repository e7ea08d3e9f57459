package drill

import (
	"bufio"
	"os"
	"strings"

	"irctl.dev/irctl/internal/exitcode"
)

// ReadEnv reads a sandbox's env file (`export K='V'` lines, as
// `irctl sandbox up` writes them).
func ReadEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, exitcode.New(exitcode.Precondition, "no sandbox: %v (start one with `irctl sandbox up`)", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			v = strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'")
		}
		env[k] = v
	}
	return env, sc.Err()
}
