//go:build unix

package fsutil

import (
	"os"
	"syscall"
)

// Lock takes an exclusive flock on f, waiting for it; it is released by
// Unlock or when f is closed (the kernel drops it if the process dies).
func Lock(f *os.File) error { return flock(f, syscall.LOCK_EX) }

// RLock takes a shared flock on f: readers share it, Lock waits for them.
func RLock(f *os.File) error { return flock(f, syscall.LOCK_SH) }

// Unlock releases a flock taken by Lock or RLock.
func Unlock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}
