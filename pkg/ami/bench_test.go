package ami

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// eventsStream repeats the captured events session (without its banner) to
// about 8 MB.
func eventsStream(b *testing.B) ([]byte, int) {
	raw, err := os.ReadFile(filepath.Join(fixtures, "ami-events.in.raw"))
	if err != nil {
		b.Fatal(err)
	}
	body := raw[bytes.IndexByte(raw, '\n')+1:]
	n := bytes.Count(body, terminator)
	reps := 8 << 20 / len(body)
	return bytes.Repeat(body, reps), n * reps
}

// BenchmarkReader parses the stream into messages.
func BenchmarkReader(b *testing.B) {
	data, msgs := eventsStream(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r := NewReader(bytes.NewReader(data))
		n := 0
		for {
			_, err := r.ReadMessage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != msgs {
			b.Fatalf("%d messages, want %d", n, msgs)
		}
	}
	b.ReportMetric(float64(msgs)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkBaselineScanLines is the floor: splitting the same bytes into
// lines with a plain bufio.Scanner and nothing else.
func BenchmarkBaselineScanLines(b *testing.B) {
	data, msgs := eventsStream(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
		}
	}
	b.ReportMetric(float64(msgs)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
