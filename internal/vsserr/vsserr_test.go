package vsserr

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCodes(t *testing.T) {
	for c, i := range codes {
		if i.name == "" || i.text == "" {
			t.Errorf("%08X has no name or text", uint32(c))
		}
		if back, ok := ByName(i.name); !ok || back != c {
			t.Errorf("ByName(%s)", i.name)
		}
	}
	// Values from vsserror.h that tools and people rely on.
	for _, c := range []struct {
		code Code
		hex  string
	}{
		{VSS_E_SNAPSHOT_SET_IN_PROGRESS, "0x80042316"},
		{VSS_E_INSUFFICIENT_STORAGE, "0x8004231F"},
		{VSS_E_WRITERERROR_TIMEOUT, "0x800423F2"},
		{VSS_E_WRITER_INFRASTRUCTURE, "0x80042318"},
		{E_ACCESSDENIED, "0x80070005"},
	} {
		if c.code.Hex() != c.hex {
			t.Errorf("%s = %s, want %s", c.code.Name(), c.code.Hex(), c.hex)
		}
	}
}

func TestErrorChain(t *testing.T) {
	base := errors.New("disk on fire")
	err := fmt.Errorf("creating: %w", Wrap(VSS_E_PROVIDER_VETO, base, "volume %s", "/srv"))
	if CodeOf(err) != VSS_E_PROVIDER_VETO || !Is(err, VSS_E_PROVIDER_VETO) || Is(err, VSS_E_BAD_STATE) || !errors.Is(err, base) {
		t.Fatal("classification lost through wrapping")
	}
	if CodeOf(nil) != S_OK || CodeOf(base) != VSS_E_UNEXPECTED {
		t.Fatal("CodeOf of plain errors")
	}
	msg := Message(err)
	for _, want := range []string{"VSS_E_PROVIDER_VETO", "0x80042306", "volume /srv", "disk on fire", "retried later"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Message lacks %q: %s", want, msg)
		}
	}
}
