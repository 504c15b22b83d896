// Package access holds the access tests of vssd (test-only): a real vssd,
// started from its built binary with an [access] configuration, is called
// on every method of every API service (enumerated from the generated
// service descriptors) by processes that run as root, as users the
// configuration allows some rights, and as a user it allows nothing. Each
// call must be allowed or refused exactly as the rights table
// (apiserver.RightOf) and the configuration say; a refused call must get
// PermissionDenied with E_ACCESSDENIED (0x80070005), must change nothing
// (catalog, shadow storage, reverts, writers, subvolumes, mounts, the
// volume's files, root's own requester sessions), and, when it would have
// changed something, must leave a "denied" record in the audit log.
//
// The calls come from the test binary itself, run again as the caller's
// uid (TestHelperProcess); requester sessions belong to the connection
// that made them, so a caller also tries its session calls on root's
// sessions, which must fail for everyone else.
//
// The tests need root (loop-device btrfs filesystems, other uids) and the
// go command (to build vssd).
package access
