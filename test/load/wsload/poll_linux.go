//go:build linux

package wsload

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Sizes of a poller.
const (
	// pollBatch is how many ready connections one epoll_wait returns.
	pollBatch = 256
	// pollReadSize is the read buffer a poller's connections share: a
	// read takes all a connection has (at 4 deltas a second, mostly one
	// message), and a snapshot streams through it into its message.
	pollReadSize = 64 << 10
	// stopEvent marks the event of the descriptor that stops the pollers
	// (the others carry the client's index).
	stopEvent = -1
)

// readers are the swarm's reader loops: a few goroutines, one epoll
// instance each (GOMAXPROCS of them, at least 2), that each serve their
// share of the connections. A goroutine per connection, parked in Go's
// netpoller and woken for each message, made two read syscalls per
// message (the second one to learn there was nothing more) and a
// goroutine switch; here a connection readable (level-triggered) is read
// once, into the loop's buffer, and its frames parsed in place.
//
// A connection handed over is taken from Go's netpoller: its socket is
// duplicated and the net.Conn closed, so that the runtime, whose epoll
// would otherwise be woken for every message too, forgets it; the
// duplicate is the connection's until it ends.
type readers struct {
	s     *Swarm
	epfds []int
	stop  int         // an eventfd in every epoll instance: readable means stop
	socks []*fdSocket // by client index
	wg    sync.WaitGroup
}

func newReaders(s *Swarm) (*readers, error) {
	r := &readers{s: s, stop: -1, socks: make([]*fdSocket, len(s.clients))}
	var err error
	if r.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	for range max(runtime.GOMAXPROCS(0), 2) {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			r.close()
			return nil, os.NewSyscallError("epoll_create1", err)
		}
		r.epfds = append(r.epfds, epfd)
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, r.stop, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: stopEvent}); err != nil {
			r.close()
			return nil, os.NewSyscallError("epoll_ctl", err)
		}
	}
	return r, nil
}

// add takes client i from Go's netpoller, handles what its handshake's
// reader holds beyond the first message, and registers it with a loop.
// It must be called before start.
func (r *readers) add(i int, c *client) error {
	sc, ok := c.conn.conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("client %d: %T has no descriptor", i, c.conn.conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("client %d: %w", i, err)
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return fmt.Errorf("client %d: %w", i, err)
	}
	if dupErr != nil {
		return fmt.Errorf("client %d: %w", i, os.NewSyscallError("fcntl", dupErr))
	}
	conn := c.conn
	sock := &fdSocket{fd: fd, laddr: conn.conn.LocalAddr(), raddr: conn.conn.RemoteAddr()}
	// The flag is the open file's, shared with the closed original (Go
	// made it non-blocking); set it all the same.
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("client %d: %w", i, os.NewSyscallError("fcntl", err))
	}
	left, _ := conn.br.Peek(conn.br.Buffered())
	conn.wmu.Lock()
	_ = conn.conn.Close() // the runtime lets go of the socket; fd keeps it open
	conn.w = sock
	conn.wmu.Unlock()
	conn.conn, conn.br = nil, nil
	r.socks[i] = sock
	if len(left) > 0 && !r.s.consume(c, left, time.Now()) {
		return nil // ended: nothing to read
	}
	if err := unix.EpollCtl(r.epfds[i%len(r.epfds)], unix.EPOLL_CTL_ADD, fd,
		&unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(i)}); err != nil {
		return fmt.Errorf("client %d: %w", i, os.NewSyscallError("epoll_ctl", err))
	}
	return nil
}

// start runs the loops.
func (r *readers) start() {
	for _, epfd := range r.epfds {
		r.wg.Go(func() { r.run(epfd) })
	}
}

// run reads the connections of one epoll instance until told to stop.
func (r *readers) run(epfd int) {
	events := make([]unix.EpollEvent, pollBatch)
	buf := make([]byte, pollReadSize)
	for {
		n, err := unix.EpollWait(epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			panic(fmt.Sprintf("wsload: epoll_wait: %v", err)) // a bug: the descriptor is ours
		}
		for _, ev := range events[:n] {
			if ev.Fd == stopEvent {
				return
			}
			sock := r.socks[ev.Fd]
			if sock.fd < 0 {
				continue // ended earlier in this batch
			}
			c := r.s.clients[ev.Fd]
			m, err := unix.Read(sock.fd, buf)
			now := time.Now()
			switch {
			case err == unix.EAGAIN || err == unix.EINTR:
				// Level-triggered: asked again if still readable.
			case err != nil:
				r.s.end(c, c.conn.readError(sock.opError("read", err)))
			case m == 0:
				r.s.end(c, c.conn.readError(io.EOF))
			default:
				r.s.consume(c, buf[:m], now)
			}
		}
	}
}

// halt stops the loops and waits for them; the connections stay open.
func (r *readers) halt() {
	if len(r.epfds) > 0 {
		one := [8]byte{1}
		if _, err := unix.Write(r.stop, one[:]); err != nil {
			panic(fmt.Sprintf("wsload: stopping the readers: %v", err))
		}
		r.wg.Wait()
	}
	r.close()
}

// wait has nothing to wait for: halt has.
func (r *readers) wait() {}

func (r *readers) close() {
	for _, epfd := range r.epfds {
		_ = unix.Close(epfd)
	}
	r.epfds = nil
	if r.stop >= 0 {
		_ = unix.Close(r.stop)
		r.stop = -1
	}
}

// fdSocket is a connection's socket once a poller owns it: the wsConn
// writes to it (pongs and closes, rare and small) under its lock, the
// poller reads it, and whoever closes it, the poller or Close once the
// pollers have stopped, sets fd to -1.
type fdSocket struct {
	fd           int
	deadline     time.Time
	laddr, raddr net.Addr
}

// Write writes all of b, waiting for room until the write deadline.
func (f *fdSocket) Write(b []byte) (int, error) {
	if f.fd < 0 {
		return 0, f.opError("write", net.ErrClosed)
	}
	written := 0
	for len(b) > 0 {
		n, err := unix.Write(f.fd, b)
		if n > 0 {
			written += n
			b = b[n:]
		}
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			wait := time.Until(f.deadline)
			if wait <= 0 {
				return written, f.opError("write", os.ErrDeadlineExceeded)
			}
			pfd := []unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, int(wait.Milliseconds())+1); err != nil && err != unix.EINTR {
				return written, f.opError("write", os.NewSyscallError("poll", err))
			}
		case err != nil:
			return written, f.opError("write", err)
		}
	}
	return written, nil
}

func (f *fdSocket) SetWriteDeadline(t time.Time) error {
	f.deadline = t
	return nil
}

// Close closes the socket (which takes it out of its epoll instance); it
// may be called again.
func (f *fdSocket) Close() error {
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	if err != nil {
		return f.opError("close", err)
	}
	return nil
}

// opError wraps err as net.Conn does, so that what the swarm records of a
// failed connection reads as before.
func (f *fdSocket) opError(op string, err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: f.laddr, Addr: f.raddr, Err: err}
}
