// Package sign signs HTTP bodies with HMAC-SHA256 over a timestamp and
// the body, the scheme of the audit webhook sink and the webhook notifier,
// and with the Standard Webhooks scheme.
package sign

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header is the name of the header carrying the signature.
const Header = "Pam-Signature"

// ErrBadSignature is returned by Verify.
var ErrBadSignature = errors.New("bad webhook signature")

// Sign returns the header value for body sent at t:
// "t=<Unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a header value against body, and that its timestamp is
// within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: no timestamp", ErrBadSignature)
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(secret, ts, body)) {
		return fmt.Errorf("%w: the signature does not match", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %s is outside the tolerance of %s", ErrBadSignature, time.Unix(sec, 0).UTC().Format(time.RFC3339), tolerance)
	}
	return nil
}

// Standard Webhooks (https://www.standardwebhooks.com): the headers
// webhook-id, webhook-timestamp and webhook-signature, the last
// "v1,<base64 of HMAC-SHA256(key, id + "." + timestamp + "." + body)>",
// with a secret written "whsec_<base64 of the key>".

// StandardSecretPrefix starts a Standard Webhooks secret.
const StandardSecretPrefix = "whsec_"

// StandardKey returns the key of a Standard Webhooks secret.
func StandardKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, StandardSecretPrefix)
	if !ok {
		return nil, fmt.Errorf("a Standard Webhooks secret starts with %q", StandardSecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("a Standard Webhooks secret is %s and the base64 of 24 to 64 bytes", StandardSecretPrefix)
	}
	return key, nil
}

// StandardSign returns the webhook-signature value for message id sent
// at t with body.
func StandardSign(key []byte, id string, t time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, t.Unix())
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Signing says how Post signs: with the project's scheme (Secret, the
// Header) and with Standard Webhooks' (StandardKey, the message's ID
// as webhook-id), each when set.
type Signing struct {
	Secret      []byte
	StandardKey []byte
	ID          string
}

// Post sends body as JSON to url with header, signed as s says (at
// now), and the extra headers given. Any 2xx answer is success;
// otherwise the error quotes the status and the start of the answer.
func Post(ctx context.Context, client *http.Client, url string, header http.Header, s Signing, now time.Time, body []byte, extra ...string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	if len(s.Secret) > 0 {
		req.Header.Set(Header, Sign(s.Secret, now, body))
	}
	if len(s.StandardKey) > 0 {
		if s.ID == "" {
			return errors.New("a Standard Webhooks message needs an ID")
		}
		req.Header.Set("webhook-id", s.ID)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", StandardSign(s.StandardKey, s.ID, now, body))
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
