package backupfmt

// Crash leaves the version as a killed backup would: its partial directory
// stays, the target's lock is released (the process is gone).
func (w *Writer) Crash() {
	w.closed = true
	w.unlock()
}
