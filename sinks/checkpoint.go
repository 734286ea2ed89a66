package sinks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/zerostanding/pam"
)

// CheckpointFile is a pam.CheckpointSink appending one JSON line per
// checkpoint to a file, fsync'd. Keep the file where the database's
// writers cannot write (see pam.Checkpoint).
type CheckpointFile struct {
	mu   sync.Mutex
	path string
}

var (
	_ pam.CheckpointSink   = (*CheckpointFile)(nil)
	_ pam.CheckpointReader = (*CheckpointFile)(nil)
)

// ReadCheckpoints implements pam.CheckpointReader: the file's checkpoints,
// in the order written.
func (s *CheckpointFile) ReadCheckpoints(context.Context) ([]pam.Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ReadCheckpoints(s.path)
}

// NewCheckpointFile returns a sink appending to the file at path, created
// (mode 0600) on the first checkpoint.
func NewCheckpointFile(path string) *CheckpointFile { return &CheckpointFile{path: path} }

// WriteCheckpoint implements pam.CheckpointSink.
func (c *CheckpointFile) WriteCheckpoint(ctx context.Context, cp pam.Checkpoint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, err := os.OpenFile(c.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadCheckpoints reads the checkpoints of a file a CheckpointFile wrote,
// in the order written. A missing file holds none.
func ReadCheckpoints(path string) ([]pam.Checkpoint, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []pam.Checkpoint
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var cp pam.Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &cp); err != nil {
			return nil, fmt.Errorf("sinks: %s:%d: %w", path, line, err)
		}
		out = append(out, cp)
	}
	return out, sc.Err()
}
