//go:build !faultinject

package fault

// Enabled reports whether this binary obeys VSS_FAULT.
const Enabled = false

// FromEnv returns nil: production builds ignore VSS_FAULT and
// VSS_FAULT_FILE.
func FromEnv() Hook { return nil }
