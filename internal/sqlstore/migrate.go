package sqlstore

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/zerostanding/pam"
)

// ErrSchemaTooNew is returned when the database was written by a newer
// version of the library than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this library supports")

// Migrate applies the migrations in files (NNN_name.sql, in order) that
// the database has not seen, each in its own transaction together with
// the recorded schema version. lock, when not empty, is run first in each
// transaction to keep concurrent migrators apart (PostgreSQL's advisory
// lock); SQLite's write transactions exclude each other already. after,
// when it has an entry for a migration's number, runs in the same
// transaction after that migration's script: data migrations written in
// Go. It returns the schema version.
func Migrate(ctx context.Context, db *sql.DB, files fs.FS, lock string, after map[int]func(context.Context, *sql.Tx) error) (int, error) {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return 0, err
	}
	sort.Strings(names)
	if len(names) == 0 {
		return 0, errors.New("sqlstore: no migrations")
	}
	latest := 0
	for i, name := range names {
		n, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil || n != i+1 {
			return 0, fmt.Errorf("sqlstore: migration %s out of sequence", name)
		}
		latest = n
	}
	for {
		applied, err := step(ctx, db, files, names, lock, latest, after)
		if err != nil {
			return 0, err
		}
		if applied == 0 {
			break
		}
	}
	return latest, nil
}

// step applies the next migration, if any, and returns how many it applied.
func step(ctx context.Context, db *sql.DB, files fs.FS, names []string, lock string, latest int, after map[int]func(context.Context, *sql.Tx) error) (int, error) {
	t, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer t.Rollback()
	if lock != "" {
		if _, err := t.ExecContext(ctx, lock); err != nil {
			return 0, err
		}
	}
	if _, err := t.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS pam_schema (version INTEGER NOT NULL)`); err != nil {
		return 0, err
	}
	var version int
	err = t.QueryRowContext(ctx, `SELECT version FROM pam_schema`).Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if _, err := t.ExecContext(ctx, `INSERT INTO pam_schema (version) VALUES (0)`); err != nil {
			return 0, err
		}
	case err != nil:
		return 0, err
	}
	if version > latest {
		return 0, fmt.Errorf("%w: the database is at version %d, this library knows %d", ErrSchemaTooNew, version, latest)
	}
	if version == latest {
		return 0, t.Commit()
	}
	script, err := fs.ReadFile(files, names[version])
	if err != nil {
		return 0, err
	}
	for _, stmt := range statements(string(script)) {
		if _, err := t.ExecContext(ctx, stmt); err != nil {
			return 0, fmt.Errorf("sqlstore: migration %s: %w", names[version], err)
		}
	}
	if f := after[version+1]; f != nil {
		if err := f(ctx, t); err != nil {
			return 0, fmt.Errorf("sqlstore: migration %s: %w", names[version], err)
		}
	}
	if _, err := t.ExecContext(ctx, `UPDATE pam_schema SET version = $1`, version+1); err != nil {
		return 0, err
	}
	return 1, t.Commit()
}

// statements splits a script at semicolons that end a line, except inside
// $$-quoted bodies.
func statements(script string) []string {
	var out []string
	var cur strings.Builder
	for _, part := range strings.SplitAfter(script, ";\n") {
		cur.WriteString(part)
		if strings.Count(cur.String(), "$$")%2 == 1 {
			continue // inside a function body
		}
		if stmt := strings.TrimSpace(cur.String()); stmt != "" {
			out = append(out, stmt)
		}
		cur.Reset()
	}
	if stmt := strings.TrimSpace(cur.String()); stmt != "" {
		out = append(out, stmt)
	}
	return out
}

// ChainExisting is the data migration that chains the events stored
// before the hash chain existed (hash IS NULL), in sequence order,
// continuing from the last chained event. Each event is chained at the
// sequence number it carries, so a gap left in those events stays for
// pam.Verify to report.
//
// The hashes it writes protect those events from the migration on; they
// cannot vouch for what happened to them before. An event that does not
// decode strictly is chained as it reads; it stays malformed
// (pam.Event.Malformed), for pam.Verify to report.
func ChainExisting(ctx context.Context, t *sql.Tx) error {
	for {
		// Before the hash chain there were no runs, nor a run column.
		rows, err := t.QueryContext(ctx, `SELECT `+eventColumnsV1+`, '' FROM pam_events WHERE hash IS NULL ORDER BY seq LIMIT 10000`)
		events, err := collect(rows, err, scanEvent)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			return nil
		}
		var last []byte
		err = t.QueryRowContext(ctx, `SELECT hash FROM pam_events WHERE seq = $1`, events[0].Seq-1).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows) && events[0].Seq == 1:
			last = make([]byte, pam.HashSize)
		case err != nil:
			return fmt.Errorf("the event before %d: %w", events[0].Seq, err)
		}
		head := pam.ChainHead{Hash: hex.EncodeToString(last)}
		for i := range events {
			e := &events[i]
			head.Seq = e.Seq - 1 // the number it carries, gap or not
			if head, err = head.Chain(events[i:i+1], nil); err != nil {
				return err
			}
			prev, _ := pam.ParseHash(e.PrevHash)
			hash, _ := pam.ParseHash(e.Hash)
			if _, err := t.ExecContext(ctx, `UPDATE pam_events SET prev_hash = $1, hash = $2 WHERE seq = $3`, prev[:], hash[:], e.Seq); err != nil {
				return err
			}
		}
	}
}

// FillSearch is the data migration that fills the search and deciders
// columns (RequestWrite) of the requests written before they existed,
// from each request's stored data, in ID order, a page at a time.
func FillSearch(ctx context.Context, t *sql.Tx) error {
	after := ""
	for {
		rows, err := t.QueryContext(ctx, `SELECT id, data FROM pam_requests WHERE id > $1 ORDER BY id LIMIT 1000`, after)
		page, err := collect(rows, err, func(rows *sql.Rows) (pam.Request, error) {
			var id, data string
			if err := rows.Scan(&id, &data); err != nil {
				return pam.Request{}, err
			}
			r, err := DecodeRequest([]byte(data))
			r.ID = id // the row's key, whatever the data says
			return r, err
		})
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for i := range page {
			r := &page[i]
			if _, err := t.ExecContext(ctx, `UPDATE pam_requests SET search = $1, deciders = $2 WHERE id = $3`, r.SearchText(), r.DecidersText(), r.ID); err != nil {
				return err
			}
		}
		after = page[len(page)-1].ID
	}
}
