package tail

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Identity tells files apart independently of their name.
type Identity struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// Position is a place in a followed file: the file (by identity) and the
// byte offset just after the last line handed out up to there.
type Position struct {
	// Path is the followed path (the configured one, even while the
	// position is in a file rotated away from it).
	Path string `json:"path"`
	Identity
	Offset int64 `json:"offset"`
}

type stateFile struct {
	Position
	// Head fingerprints the file (sha256 of its first HeadLen bytes), so
	// that a new file that got the old one's inode number is not mistaken
	// for it.
	HeadLen int       `json:"head_len,omitempty"`
	Head    string    `json:"head,omitempty"`
	Updated time.Time `json:"updated"`
	// Meta is the caller's data saved with the position (CommitMeta).
	Meta json.RawMessage `json:"meta,omitempty"`
}

// headSize is how much of a file's beginning is fingerprinted.
const headSize = 256

type head struct {
	n   int
	sum string
}

// readHead fingerprints the first min(headSize, limit) bytes of f.
func readHead(f io.ReaderAt, limit int64) (head, error) {
	n := int64(headSize)
	if limit < n {
		n = limit
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return head{}, err
	}
	sum := sha256.Sum256(b)
	return head{n: int(n), sum: hex.EncodeToString(sum[:])}, nil
}

// statePath is the state file of a followed path inside dir.
func statePath(dir, path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(dir, filepath.Base(path)+"-"+hex.EncodeToString(sum[:8])+".json")
}

// loadState reads the saved position of path; ok is false when there is none.
func loadState(dir, path string) (stateFile, bool, error) {
	b, err := os.ReadFile(statePath(dir, path))
	if errors.Is(err, os.ErrNotExist) {
		return stateFile{}, false, nil
	}
	if err != nil {
		return stateFile{}, false, fmt.Errorf("tail: read state: %w", err)
	}
	var s stateFile
	if err := json.Unmarshal(b, &s); err != nil {
		return stateFile{}, false, fmt.Errorf("tail: state file %s: %w", statePath(dir, path), err)
	}
	return s, true, nil
}

// saveState writes the position atomically: a temporary file, synced, then
// renamed over the previous state.
func saveState(dir string, p Position, h head, meta json.RawMessage) error {
	b, err := json.Marshal(stateFile{Position: p, HeadLen: h.n, Head: h.sum, Updated: time.Now().UTC(), Meta: meta})
	if err != nil {
		return err
	}
	final := statePath(dir, p.Path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(final)+"-*")
	if err != nil {
		return fmt.Errorf("tail: save state: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("tail: save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tail: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tail: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("tail: save state: %w", err)
	}
	if d, err := os.Open(dir); err == nil { // make the rename durable (best effort)
		_ = d.Sync()
		d.Close()
	}
	return nil
}
