// Package faults is the fault-injection harness of the shadow copy service
// (test code only). For every phase of a shadow copy set — the
// coordinator's fault points, each writer event, the catalog commit — and
// for the eviction of old shadows, a delete and a revert, it runs the
// operation through a real vssd (built with -tags faultinject) on real
// btrfs, XFS (reflink) and ext4 (copy) filesystems made on loop devices,
// injects one fault, restarts what died, and checks the service's promises:
//
//   - no filesystem stays frozen, and no application stays frozen past its
//     freeze deadline (the longest time an application was frozen is
//     measured and reported);
//   - the catalog lists exactly the shadow copies that exist on disk: no
//     orphan snapshot, clone or copy is left, interrupted sets are rolled
//     back, interrupted deletes finished;
//   - an interrupted revert leaves the volume as it was or as the shadow
//     copy was, never in between;
//   - the requester (vssadmin, or diskshadow for BackupComplete) gets the
//     VSS error the fault calls for.
//
// The faults are: SIGKILL of vssd (VSS_FAULT point=kill, or a kill while a
// writer is inside an event), SIGKILL of a writer, a writer that hangs, a
// provider error (point=error:0x8004230F), a full shadow storage and a full
// state directory (each filesystem filled while the service stands still at
// the point: point=wait). The writer is the program in faultwriter/, an
// application with an SDK writer that dies, hangs or pauses at an event on
// request.
//
// TestFaultMatrix prints a table phase × fault → runs and invariant
// violations (the goal is 0 everywhere), and writes it to the file named by
// VSS_FAULT_TABLE when set. By default every cell runs once, on one
// provider chosen per cell; VSS_TEST_MODE=long runs every cell on every
// provider several times. docs/fault-injection.md describes the fault
// points and actions.
package faults
