// Package sinks holds audit sinks and a checkpoint sink for pam: a JSON
// Lines file, log/slog, an HTTP webhook, and a checkpoint file. Each is
// attached with pam.SinkConfig, as required or best-effort.
package sinks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/zerostanding/pam"
)

// FileOptions configure a File.
type FileOptions struct {
	// MaxBytes is the size past which the file is rotated. Default:
	// 100 MiB. A single write larger than it still goes into one file.
	MaxBytes int64
	// Mode is the permission of new files. Default: 0600.
	Mode os.FileMode
}

// File is an AuditSink writing JSON Lines: one event per line, each line
// a complete JSON object (pam.Event's encoding) with its seq, prev_hash
// and hash, so that a line can be checked on its own (pam.Event.CheckHash)
// and consecutive lines as a chain. A Write returns only after the lines
// are fsync'd.
//
// When the file would grow past MaxBytes it is rotated: renamed to
// PATH.N, with N one more than the last rotated file's, and a new file
// started. The sink never deletes rotated files: retention is the host's
// decision. Files lists them in order.
//
// File implements pam.SinkResumer: it remembers the last Seq it holds,
// skips events at or before it (a Write retried after a failure writes
// nothing twice), and tells a restarted Manager where to resume. A line
// torn by a crash is cut off when the file is opened.
type File struct {
	mu   sync.Mutex
	path string
	opts FileOptions
	f    *os.File
	size int64
	last int64 // Seq of the last line written
	next int   // the number the next rotated file gets
}

var (
	_ pam.AuditSink   = (*File)(nil)
	_ pam.SinkResumer = (*File)(nil)
)

// OpenFile opens (creating if needed) the JSON Lines file at path.
func OpenFile(path string, opts *FileOptions) (*File, error) {
	s := &File{path: path}
	if opts != nil {
		s.opts = *opts
	}
	if s.opts.MaxBytes < 0 {
		return nil, fmt.Errorf("%w: FileOptions.MaxBytes must not be negative", pam.ErrInvalid)
	}
	if s.opts.MaxBytes == 0 {
		s.opts.MaxBytes = 100 << 20
	}
	if s.opts.Mode == 0 {
		s.opts.Mode = 0o600
	}
	rotated, err := Files(path)
	if err != nil {
		return nil, err
	}
	rotated = rotated[:len(rotated)-1] // without the current file
	s.next = 1
	if len(rotated) > 0 {
		n, _ := rotationNumber(path, rotated[len(rotated)-1])
		s.next = n + 1
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	// The last event: in the current file, or in the last rotated one.
	for _, p := range append([]string{path}, reverse(rotated)...) {
		seq, err := lastSeq(p)
		if err != nil {
			s.f.Close()
			return nil, err
		}
		if seq > 0 {
			s.last = seq
			break
		}
	}
	return s, nil
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// open opens the current file, cutting off a torn last line.
func (s *File) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, s.opts.Mode)
	if err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return err
	}
	if size > 0 {
		good, err := completeLines(f, size)
		if err != nil {
			f.Close()
			return err
		}
		if good != size {
			if err := f.Truncate(good); err != nil {
				f.Close()
				return err
			}
			if _, err := f.Seek(good, io.SeekStart); err != nil {
				f.Close()
				return err
			}
			size = good
		}
	}
	s.f, s.size = f, size
	return nil
}

// completeLines returns the length of f up to its last newline.
func completeLines(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// lastSeq returns the Seq of the last complete line of the file at p.
func lastSeq(p string) (int64, error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end, err := completeLines(f, st.Size())
	if err != nil || end == 0 {
		return 0, err
	}
	start := max(0, end-1<<20)
	buf := make([]byte, end-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	line := buf[bytes.LastIndexByte(buf, '\n')+1:]
	var e struct {
		Seq int64 `json:"seq"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return 0, fmt.Errorf("sinks: last line of %s: %w", p, err)
	}
	return e.Seq, nil
}

// Write implements pam.AuditSink.
func (s *File) Write(ctx context.Context, events []pam.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("sinks: file is closed")
	}
	var buf bytes.Buffer
	last := s.last
	for i := range events {
		if events[i].Seq <= last {
			continue // already written
		}
		line, err := json.Marshal(&events[i])
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
		last = events[i].Seq
	}
	if buf.Len() == 0 {
		return nil
	}
	if s.size > 0 && s.size+int64(buf.Len()) > s.opts.MaxBytes {
		if err := s.rotate(); err != nil {
			return fmt.Errorf("sinks: rotate %s: %w", s.path, err)
		}
	}
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		// Cut off what was written, so the file ends with a whole line.
		s.f.Truncate(s.size)
		s.f.Seek(s.size, io.SeekStart)
		return fmt.Errorf("sinks: write %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		s.f.Truncate(s.size)
		s.f.Seek(s.size, io.SeekStart)
		return fmt.Errorf("sinks: sync %s: %w", s.path, err)
	}
	s.size += int64(buf.Len())
	s.last = last
	return nil
}

// rotate renames the current file to PATH.N and starts a new one.
func (s *File) rotate() error {
	if err := s.f.Sync(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return err
	}
	s.f = nil
	if err := os.Rename(s.path, s.path+"."+strconv.Itoa(s.next)); err != nil {
		s.open()
		return err
	}
	s.next++
	if err := s.open(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LastSeq implements pam.SinkResumer.
func (s *File) LastSeq(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// Close closes the file.
func (s *File) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Files returns the files of the sink at path, oldest first: the rotated
// PATH.1, PATH.2, … and then PATH itself.
func Files(path string) ([]string, error) {
	matches, err := filepath.Glob(globEscape(path) + ".*")
	if err != nil {
		return nil, err
	}
	type numbered struct {
		n    int
		path string
	}
	var rotated []numbered
	for _, m := range matches {
		if n, ok := rotationNumber(path, m); ok {
			rotated = append(rotated, numbered{n, m})
		}
	}
	sort.Slice(rotated, func(i, j int) bool { return rotated[i].n < rotated[j].n })
	out := make([]string, 0, len(rotated)+1)
	for _, r := range rotated {
		out = append(out, r.path)
	}
	return append(out, path), nil
}

func rotationNumber(path, p string) (int, bool) {
	suffix, ok := strings.CutPrefix(p, path+".")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(suffix)
	return n, err == nil && n > 0 && strconv.Itoa(n) == suffix
}

func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ReadFile reads the events of the files of the sink at path (see Files),
// oldest first.
func ReadFile(path string) ([]pam.Event, error) {
	files, err := Files(path)
	if err != nil {
		return nil, err
	}
	var out []pam.Event
	for _, p := range files {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for line := 1; sc.Scan(); line++ {
			var e pam.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				f.Close()
				return nil, fmt.Errorf("sinks: %s:%d: %w", p, line, err)
			}
			out = append(out, e)
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
