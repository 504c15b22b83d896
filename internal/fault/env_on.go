//go:build faultinject

package fault

import "os"

// Enabled reports whether this binary obeys VSS_FAULT.
const Enabled = true

// FromEnv returns the hook VSS_FAULT describes.
func FromEnv() Hook { return FromSpec(os.Getenv("VSS_FAULT")) }
