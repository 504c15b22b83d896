// Package consistency holds the consistency proof of the service: the
// classic experiment of DESIGN.md ("Testing"), run against real
// filesystems on loop devices, real databases and the real service in the
// test's process. The package has no code of its own; it is its tests,
// one file per database. What follows describes the PostgreSQL proof
// (postgres_test.go); the other databases' files follow the same pattern.
//
// The experiment, per provider: a private PostgreSQL cluster has its data
// directory on the volume; two clients insert timestamped rows into a
// table rows(id, t, client), one every 100 ms and one every 10 ms, and
// record per row when the INSERT was sent and when its commit returned.
// After about a second a shadow copy set of the volume is made through the
// service; the clients go on for another second. A second server is then
// started on a writable copy of the shadow (a writable btrfs snapshot of
// the read-only btrfs shadow; cp -a --reflink=auto of the others) and the
// shadow's rows are checked against what the clients saw:
//
//   - every row whose commit returned before CreateShadowSet was called
//     is in the shadow;
//   - no row whose INSERT was sent after CreateShadowSet returned is in it;
//   - each client's rows in the shadow are a prefix of its rows (a client
//     inserts one row at a time, so any consistent state has a prefix);
//   - no row of the shadow is unknown to the clients, SELECT count(*)
//     agrees with a full scan, and pg_amcheck (heap and B-tree, with
//     heapallindexed) finds no corruption.
//
// The combinations are btrfs (atomic snapshot), reflink on XFS (FICLONE
// file by file: not atomic, and the filesystem cannot be frozen since the
// clones are written to it), copy on ext4 with its shadow storage on a
// second ext4 (the volume is frozen for the final pass: atomic) and copy
// on ext4 with the storage on the same filesystem (no freeze: not atomic).
//
// With the PostgreSQL writer taking part (context app-rollback), every
// combination must pass: the writer runs pg_backup_start before the
// snapshot and pg_backup_stop after it, and in PostSnapshot writes the
// backup_label and the WAL into the shadow, so that the server started on
// it does backup recovery to the stop point whatever the provider did to
// the files in between.
//
// Without a writer (context client-accessible) a shadow is at best
// crash-consistent: the server on it does crash recovery. The tests
// assert that only where the service says its shadow is crash-consistent
// (Shadow.CrashConsistent: btrfs, and copy with its storage elsewhere,
// which freezes the volume); for reflink and for copy with its storage on
// the same filesystem they only record the outcome, one line per
// combination ("SUMMARY ... started k/N, consistent m/N") in the output of
// go test -v. Such shadows are neither atomic nor prepared by a writer: a
// database in them may not start, or may have lost or torn rows. Use them
// for databases only with the database's writer. That they pass in a run
// proves little: the files of a small cluster are cloned or copied within
// milliseconds of each other and crash recovery repairs most tearing; a
// copy breaks when its files disagree in a way replay cannot mend (a
// checkpoint that completes between the copy of the data files and the
// copy of pg_control, WAL copied before the data pages it describes),
// which a short, lightly loaded run rarely hits.
//
// TestPostgresWriterMissingVolume covers the faults of a set the writer
// must refuse: with the data directory on one volume and a tablespace on
// another, a set that lacks either volume fails with
// VSS_E_WRITERERROR_INCONSISTENTSNAPSHOT (0x800423F0), leaves no shadow
// and no backup in progress (no writer session, no replication slot) on
// the server; a set made while the server is down fails with
// VSS_E_WRITERERROR_RETRYABLE.
//
// N is 3, or 20 when VSS_TEST_MODE=long.
package consistency
