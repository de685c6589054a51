package wsload

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/pbxpulse/pbxpulse/pkg/pbxpulsev1"
)

// floorPeer is a client of the floor server: its socket, out of Go's
// netpoller (the file keeps the descriptor open).
type floorPeer struct {
	file *os.File
	fd   int
}

// serveRaw upgrades a client of the floor server, writes its snapshot and
// hands its socket to the publisher.
func (b *Broadcaster) serveRaw(w http.ResponseWriter, r *http.Request) {
	g, ok := b.groupOf(w, r)
	if !ok {
		return
	}
	conn, _, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	p, err := takeSocket(conn)
	if err != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	snap := Envelope("snapshot", fmt.Appendf(nil, `{"tenant":%q,"version":"%d"}`, g.name, g.version))
	if !p.write(textFrame(snap)) {
		p.file.Close()
		return
	}
	g.raw = append(g.raw, p)
}

// takeSocket moves conn's socket out of Go's netpoller, non-blocking.
func takeSocket(conn net.Conn) (*floorPeer, error) {
	defer conn.Close()
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("%T has no descriptor", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("dup", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return &floorPeer{file: os.NewFile(uintptr(fd), "ws"), fd: fd}, nil
}

// write writes frame whole with one system call; false if the socket
// could not take it (too slow, or gone).
func (p *floorPeer) write(frame []byte) bool {
	n, err := unix.Write(p.fd, frame)
	return err == nil && n == len(frame)
}

// textFrame frames data as one unmasked text message.
func textFrame(data []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(data) + ws.MaxHeaderSize)
	_ = ws.WriteFrame(&buf, ws.NewTextFrame(data)) // a bytes.Buffer does not fail
	return buf.Bytes()
}

// publishRaw sends the next delta of each group in due, the groups shared
// among a goroutine per core.
func (b *Broadcaster) publishRaw(due []int, now time.Time) error {
	workers := min(runtime.GOMAXPROCS(0), len(due))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(due); i += workers {
				if err := b.publishGroupRaw(b.groups[due[i]], now); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *Broadcaster) publishGroupRaw(g *group, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := g.version + 1
	data, err := DeltaFrame(&pb.Delta{Tenant: g.name, Version: v, Changes: []*pb.Change{CallChange(g.name, v)}, CommittedAt: timestamppb.New(now)})
	if err != nil {
		return err
	}
	frame := textFrame(data)
	g.version = v
	kept := g.raw[:0]
	for _, p := range g.raw {
		if p.write(frame) {
			kept = append(kept, p)
		} else {
			p.file.Close() // too slow or gone: the client sees its connection end
		}
	}
	clear(g.raw[len(kept):])
	g.raw = kept
	return nil
}
