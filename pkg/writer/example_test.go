package writer_test

import (
	"context"
	"errors"
	"log"
	"sync"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/pkg/vssmeta"
	"github.com/linuxvss/vss/pkg/writer"
)

// cache is an application that keeps data in /srv/cache and can hold its
// writes.
type cache struct {
	writer.Base
	mu sync.Mutex // held while frozen
}

func (c *cache) Metadata() *vssmeta.WriterMetadata {
	class := uuid.MustParse("0c6f4a52-2b7e-4d55-9f3a-7d1e2c4b5a60")
	return &vssmeta.WriterMetadata{
		WriterID: class, InstanceID: uuid.NewSHA1(class, []byte("main")), Name: "Cache Writer", InstanceName: "main",
		Usage: vssmeta.UsageUserData, Source: vssmeta.SourceOther,
		Restore: vssmeta.RestoreMethodInfo{Method: vssmeta.RestoreIfCanReplace},
		Components: []vssmeta.Component{{
			Type: vssmeta.ComponentFileGroup, Name: "cache", Selectable: true,
			Files: []vssmeta.File{{Path: "/srv/cache", Filespec: "*", Recursive: true}},
		}},
	}
}

func (c *cache) Freeze(ctx context.Context, e *writer.Event) error {
	if !c.mu.TryLock() {
		return writer.Retryable(errors.New("already frozen"))
	}
	return nil // writes wait on c.mu until Thaw
}

func (c *cache) Thaw(ctx context.Context, e *writer.Event) error {
	c.mu.Unlock()
	return nil
}

// Abort undoes a freeze; the SDK also calls it when the freeze deadline
// passes or the service goes away.
func (c *cache) Abort(ctx context.Context, e *writer.Event) error {
	c.mu.TryLock() // frozen or not, make it unlocked
	c.mu.Unlock()
	return nil
}

// A writer registers with vssd and serves its events until ctx ends.
func Example() {
	ctx := context.Background()
	if err := writer.Run(ctx, &cache{}, writer.Options{OnError: "fail"}); err != nil {
		log.Print(err)
	}
}
