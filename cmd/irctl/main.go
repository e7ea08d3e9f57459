// Command irctl runs security incident-response runbooks against a
// Kubernetes cluster and the platform's PostgreSQL database.
package main

import (
	"os"

	"irctl.dev/irctl/internal/cli"
)

func main() { os.Exit(cli.Main()) }
