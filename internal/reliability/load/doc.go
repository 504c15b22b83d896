// Package load is the load test of the shadow copy service (reliability,
// part 2): many clients at once against one real vssd for a bounded time.
//
// It has no code of its own. The test (load_test.go) builds vssd, makes
// eight volumes on loop devices — five btrfs, two XFS with reflink, one
// ext4 whose complete copies are stored on an XFS volume, so that its
// filesystem is frozen by a guard at every commit — and runs two phases on
// them, each against vssd started as a real process on a private socket
// and a state directory on the root filesystem:
//
//   - delete (20 s; VSS_TEST_MODE=long: 3 minutes): max_shadow_copies is
//     far above what the requesters keep, nothing is evicted, and every
//     listed set must be whole;
//   - evict (15 s; long: 2 minutes), after an orderly stop and a restart
//     on the same state (which must find the previous phase's sets and
//     nothing to recover): max_shadow_copies is 12, the requesters keep
//     more, and the service evicts the oldest shadow that no live session
//     holds; an administrator deletes the oldest shadow of a random volume
//     every 100 ms.
//
// VSS_LOAD_DURATION sets the length of both phases. In each, at once:
//
//   - 50 requesters, each on its own API connection, make sets of one to
//     three random volumes; 20 of them ask the service to wait for a busy
//     coordinator (autoretry), the others do not. Some make Backup
//     (auto-release) sets, the others ClientAccessible (persistent) ones.
//     Each keeps a few sets and deletes its oldest whole set beyond that;
//     now and then it closes its connection and dials again, which ends
//     its session and releases its Backup sets. A create must succeed, or
//     fail with VSS_E_SNAPSHOT_SET_IN_PROGRESS (0x80042316) — for a
//     waiting requester only once its wait has passed — or, when the
//     service evicts, with VSS_E_MAXIMUM_NUMBER_OF_SNAPSHOTS_REACHED when
//     live sessions hold every shadow of a volume. A made shadow must be on
//     disk, a deleted one gone;
//   - 200 readers, each on its own connection, list all shadows, those of
//     one volume, or the volumes. A listing never fails and is consistent:
//     IDs unique, oldest first, at most max_shadow_copies per volume, no
//     set whose delete — and no shadow whose eviction — was reported
//     before the listing began, no auto-release set long after its
//     connection closed, and every set whose create had returned before it
//     began and whose delete had not begun before it ended, whole. With
//     eviction, a shadow missing from a set must turn out, by the end, to
//     have been evicted (or deleted by the administrator);
//   - one writer per volume appends to a file (its latency shows the holds
//     of the ext4 volume); a heartbeat calls Info every 50 ms and a ticker
//     measures how late the test's own goroutines run: what the machine,
//     not vssd's locks, adds to every latency.
//
// A watchdog fails the test when an operation lasts too long (20 s; a
// waiting create 20 s beyond its wait) or no set is made or no listing
// completes for that long: it sends SIGQUIT to vssd (GOTRACEBACK=all: its
// goroutines go to its log, which the failure prints and keeps) and writes
// the test's own goroutines to a file.
//
// At the end of a phase, the catalog, as listed through the API and as
// read from catalog.db once vssd has stopped, holds exactly the sets the
// requesters still have (but the shadows evicted), every set record naming
// exactly its shadows, with no unfinished journal entry; the storage
// directories hold exactly the catalog's shadows (no orphan, none
// missing); the auto-release shadows of closed connections are released;
// no freeze guard outlives vssd; vssd logged no error. vssd's RSS and open
// descriptors, sampled every second, stay flat: in the steady part of the
// load (after the warm-up, once the catalog has grown to its usual size),
// the median of the last third may exceed that of the first third by at
// most 30 % or 30 MiB.
//
// The test prints, per phase, a table — per operation and outcome: count,
// throughput, p50, p99 and maximum latency — and writes the tables to the
// file VSS_LOAD_TABLE names, if set. It needs root; outside CI it skips
// without (see testutil.SkipOrFail).
package load
