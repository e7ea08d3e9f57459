package credaction

import (
	"testing"

	"irctl.dev/irctl/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }
