package openapitest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/helpers"
)

// bodyShownMax bounds the part of a body quoted in a report: enough for a
// problem document, not a page of output.
const bodyShownMax = 2 << 10

// Client returns a shallow copy of c (nil: http.DefaultClient) whose transport
// checks every response with Transport.
func Client(t testing.TB, c *http.Client) *http.Client {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	checked := *c
	checked.Transport = Transport(t, c.Transport)
	return &checked
}

// Transport wraps next (nil: http.DefaultTransport) so that every response it
// returns is checked as Check does. It fails t at once if the document cannot
// be loaded.
func Transport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	t.Helper()
	c, err := committed()
	if err != nil {
		t.Fatal(err)
	}
	return c.transport(t, next)
}

// Check reports with t.Errorf every way resp breaks the operation that req
// selects in the document: a status code it does not declare, a content type
// the status does not declare, a body that does not match the schema (formats
// included), a required header missing. A request that selects no operation
// (a path or method the document does not have, such as /metrics or a
// deliberate 404 probe) is skipped. req is only used to find the operation and
// is not changed. resp.Body is read to the end and replaced by a reader of the
// same bytes, so the caller can still read all of it.
func Check(t testing.TB, req *http.Request, resp *http.Response) {
	t.Helper()
	c, err := committed()
	if err != nil {
		t.Error(err)
		return
	}
	c.check(t, req, resp)
}

func (c *checker) transport(t testing.TB, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &transport{t: t, next: next, checker: c}
}

type transport struct {
	t       testing.TB
	next    http.RoundTripper
	checker *checker
}

func (tr *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := tr.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	tr.checker.check(tr.t, req, resp)
	return resp, nil
}

// CloseIdleConnections passes on to next, so that http.Client's
// CloseIdleConnections still reaches the connections (tests that verify no
// goroutine is left over rely on it).
func (tr *transport) CloseIdleConnections() {
	if c, ok := tr.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (c *checker) check(t testing.TB, req *http.Request, resp *http.Response) {
	t.Helper()
	body, err := readAndRestore(resp)
	if err != nil {
		// The caller meets the same error when it reads the body; a partial
		// body says nothing about the document.
		return
	}
	// The validator sees copies: the caller's request is not changed and its
	// body (long since sent) is not touched, and the caller's response body
	// stays unread.
	probe := req.Clone(req.Context())
	probe.Body = http.NoBody
	seen := *resp
	seen.Body = io.NopCloser(bytes.NewReader(body))

	ok, failures := c.validator.ValidateHttpResponse(probe, &seen)
	if ok || unrouted(failures) {
		return
	}
	t.Errorf("%s", report(req, resp, failures, body))
}

// readAndRestore reads resp.Body to the end, closes it and puts back a reader
// of the same bytes, ending in the read error if there was one.
func readAndRestore(resp *http.Response) ([]byte, error) {
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var restored io.Reader = bytes.NewReader(body)
	if err != nil {
		restored = io.MultiReader(restored, iotest.ErrReader(err))
	}
	resp.Body = io.NopCloser(restored)
	return body, err
}

// unrouted reports whether the validator found no single operation for the
// request: the path or its method is not in the document, or the path is
// ambiguous. Such failures describe the request, not the response, and the
// validator returns them alone.
func unrouted(failures []*errors.ValidationError) bool {
	for _, f := range failures {
		if f.ValidationType != helpers.PathValidation {
			return false
		}
	}
	return len(failures) > 0
}

func report(req *http.Request, resp *http.Response, failures []*errors.ValidationError, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "openapitest: %s %s answered %d (%s), which api/openapi.yaml does not allow:",
		req.Method, req.URL.RequestURI(), resp.StatusCode, resp.Header.Get("Content-Type"))
	for _, f := range failures {
		fmt.Fprintf(&b, "\n  - %s", f.Message)
		if f.Reason != "" {
			fmt.Fprintf(&b, ": %s", f.Reason)
		}
		for _, s := range f.SchemaValidationErrors {
			b.WriteString("\n      ")
			if s.FieldPath != "" {
				fmt.Fprintf(&b, "%s: ", s.FieldPath)
			}
			b.WriteString(s.Reason)
			if s.KeywordLocation != "" {
				fmt.Fprintf(&b, " (schema %s)", s.KeywordLocation)
			}
		}
	}
	fmt.Fprintf(&b, "\n  body (%d bytes): %s", len(body), truncate(body, bodyShownMax))
	return b.String()
}

// truncate cuts body to at most limit bytes, at a UTF-8 boundary.
func truncate(body []byte, limit int) string {
	if len(body) <= limit {
		return string(body)
	}
	n := limit
	for n > 0 && !utf8.RuneStart(body[n]) {
		n--
	}
	return string(body[:n]) + "…"
}
