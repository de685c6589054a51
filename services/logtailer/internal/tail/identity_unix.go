//go:build unix

package tail

import (
	"os"
	"syscall"
)

func identityOf(fi os.FileInfo) Identity {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return Identity{Dev: uint64(st.Dev), Ino: uint64(st.Ino)} //nolint:unconvert // types differ per platform
	}
	return Identity{}
}
