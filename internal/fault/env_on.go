//go:build faultinject

package fault

import "os"

// Enabled reports whether this binary obeys VSS_FAULT.
const Enabled = true

// FromEnv returns the hook VSS_FAULT describes, joined with the one the
// file VSS_FAULT_FILE holds (read again at every point); nil when neither
// is set.
func FromEnv() Hook {
	var file Hook
	if p := os.Getenv("VSS_FAULT_FILE"); p != "" {
		file = FromFile(p)
	}
	return Join(FromSpec(os.Getenv("VSS_FAULT")), file)
}
