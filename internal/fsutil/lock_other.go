//go:build !unix

package fsutil

import "os"

// Without flock, callers' own mutexes still serialise writers within one
// process; the incident lock keeps a second responder out.
func Lock(*os.File) error   { return nil }
func RLock(*os.File) error  { return nil }
func Unlock(*os.File) error { return nil }
