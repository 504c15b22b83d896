// Package scripts holds the project's shell scripts; its test runs the
// README's first command so that it keeps working.
package scripts

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/linuxvss/vss/internal/testutil"
)

// TestDemo runs scripts/demo.sh, the README's main job, and checks that it
// took a shadow copy, showed the old content in it and reverted to it.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	out, err := exec.Command("bash", "demo.sh").CombinedOutput()
	s := string(out)
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, s)
	}
	for _, want := range []string{
		"Successfully created shadow copy for",
		"Contents of shadow copy set ID:",
		"Successfully reverted",
		"Successfully deleted the 1 shadow copies.",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("demo output lacks %q:\n%s", want, s)
		}
	}
	// The shadow showed the old balance while the volume had the new one,
	// and the revert brought the old one back.
	if strings.Count(s, "balance=100") < 3 || !strings.Contains(s, "balance=0") {
		t.Errorf("demo did not show the point in time:\n%s", s)
	}
	if strings.Contains(s, "btrfs is not available") && testutil.InCI() {
		t.Error("the demo fell back to ext4 in CI, where btrfs must be installed")
	}
}
