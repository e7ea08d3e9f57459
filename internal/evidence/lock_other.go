//go:build !unix

package evidence

import "os"

// Without flock, the store's mutex still serialises writers within one
// process; the incident lock keeps a second responder out.
func lockFile(*os.File) error   { return nil }
func unlockFile(*os.File) error { return nil }
