//go:build !linux

package wsload

import (
	"sync"
	"time"
)

// readers, away from Linux (where poll_linux.go serves all connections
// from a few epoll loops), are a goroutine per connection reading it
// through Go's netpoller into a buffer of its own.
type readers struct {
	s     *Swarm
	conns []*client
	wg    sync.WaitGroup
}

func newReaders(s *Swarm) (*readers, error) { return &readers{s: s}, nil }

// add handles what client i's handshake reader holds beyond the first
// message; the connection is read from then on.
func (r *readers) add(i int, c *client) error {
	if left, _ := c.conn.br.Peek(c.conn.br.Buffered()); len(left) > 0 && !r.s.consume(c, left, time.Now()) {
		return nil
	}
	c.conn.br = nil
	r.conns = append(r.conns, c)
	return nil
}

func (r *readers) start() {
	for _, c := range r.conns {
		r.wg.Go(func() { r.run(c) })
	}
}

func (r *readers) run(c *client) {
	buf := make([]byte, readBufferSize)
	for {
		n, err := c.conn.conn.Read(buf)
		now := time.Now()
		if n > 0 && !r.s.consume(c, buf[:n], now) {
			return
		}
		if err != nil {
			r.s.end(c, c.conn.readError(err)) // io.EOF as is
			return
		}
	}
}

// halt waits for the goroutines, which end as Close closes their
// connections.
func (r *readers) halt() {}

// wait waits for the goroutines once the connections are closed.
func (r *readers) wait() { r.wg.Wait() }
