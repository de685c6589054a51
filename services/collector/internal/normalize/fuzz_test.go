package normalize

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pbxpulse/pbxpulse/pkg/ami"
	"github.com/pbxpulse/pbxpulse/pkg/bus"
)

// FuzzNormalize feeds every captured AMI message, and mutations of it, to
// every decoder of the normalizer: none may panic, and whatever becomes an
// event must be encodable and have a subject.
func FuzzNormalize(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixtures, "*.in.raw"))
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for _, block := range strings.Split(string(raw), "\r\n\r\n") {
			f.Add([]byte(block + "\r\n\r\n"))
		}
	}
	cls := &Classifier{}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := ami.Parse(frame)
		if err != nil {
			return // a framing error is the reader's to report
		}
		if e := Event(m); e != nil {
			e.Tenant, e.PbxId, e.Id = "t", "p", "id"
			if _, err := bus.EventSubject(e); err != nil {
				t.Fatalf("event without subject: %v", err)
			}
			if _, err := proto.Marshal(e); err != nil {
				t.Fatalf("event does not encode: %v", err)
			}
		}
		cls.NoteRegistration(m)
		_ = cls.Kind(m)
		_ = cls.Peer(m)
		_ = EndpointState(m, cls.Kind(m))
		_ = ContactListItem(m)
		_ = OutboundRegistration(m)
		_ = CoreShowChannel(m)
		_ = QueueMember(m)
		_ = QueueParams(m)
		_ = QueueEntry(m)
		_ = ExtensionStatus(m)
	})
}
