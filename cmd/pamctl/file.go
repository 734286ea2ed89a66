package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/zerostanding/pam"
	"github.com/zerostanding/pam/pamhttp"
)

// readFile reads name ("-" for stdin) as YAML or JSON into v, as strictly
// as the server reads a body: a member v has no field for is an error,
// and so is a key given twice. A .json file, or content that starts with
// "{", is JSON; anything else YAML (of which JSON is a subset), which is
// turned into JSON first, so v's JSON names and duration strings ("4h")
// hold in both. Errors name the file and match pam.ErrInvalid, but for
// a file that cannot be read.
func readFile(name string, stdin io.Reader, v any) error {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Errorf("%s: %w: the file is empty", name, pam.ErrInvalid)
	}
	ext := strings.ToLower(filepath.Ext(name))
	isJSON := ext == ".json" || ext != ".yaml" && ext != ".yml" && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{"))
	js := b
	if !isJSON {
		if js, err = yaml.YAMLToJSONStrict(b); err != nil {
			return fmt.Errorf("%s: %w: %v", name, pam.ErrInvalid, err)
		}
		if string(js) == "null" {
			return fmt.Errorf("%s: %w: the file holds no document (only comments?)", name, pam.ErrInvalid)
		}
	}
	if err := pamhttp.Unmarshal(js, v); err != nil {
		var se *json.SyntaxError
		if isJSON && errors.As(err, &se) {
			line, col := position(b, se.Offset)
			return fmt.Errorf("%s:%d:%d: %w: %v", name, line, col, pam.ErrInvalid, se)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// position returns the line and column (from 1) of byte offset off of b.
func position(b []byte, off int64) (line, col int) {
	off = min(max(off, 1), int64(len(b)))
	before := b[:off-1]
	line = bytes.Count(before, []byte("\n")) + 1
	return line, len(before) - bytes.LastIndexByte(before, '\n')
}
