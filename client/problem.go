package client

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

const (
	// problemBodyMax bounds how much of an error answer is read; a problem is a few hundred bytes.
	problemBodyMax = 64 << 10
	// problemTextMax bounds how much of an answer that is not a problem becomes its Detail.
	problemTextMax = 512
)

// TypeInsufficientFunds names the problem of a transfer refused because the debited account
// does not hold enough money (nothing was written): Problem.HasType(TypeInsufficientFunds).
const TypeInsufficientFunds = "insufficient-funds"

// Problem is an answer outside 2xx, decoded from its RFC 9457 application/problem+json body.
// Clients made by New return it as the error of every such answer. An answer that is not a
// problem (a proxy's text page, say) still becomes one: Type "about:blank", Title the status
// text, Detail the start of the body.
type Problem struct {
	// Type is a URI reference naming the kind of problem; "about:blank" when the body gives none.
	Type string `json:"type"`
	// Title is a short summary of the problem type; the status text when the body gives none.
	Title string `json:"title"`
	// Status is the body's status member, which RFC 9457 calls advisory: an intermediary may have
	// changed the answer's code. It is the answer's code when the body gives none.
	Status   int            `json:"status"`
	Detail   string         `json:"detail"`
	Instance string         `json:"instance"`
	Errors   []ProblemError `json:"errors"`

	// StatusCode is the HTTP status code of the answer.
	StatusCode int `json:"-"`
	// Header is the answer's header, for Retry-After on a 429 or 503.
	Header http.Header `json:"-"`
}

// ProblemError is one failing field of a validation problem.
type ProblemError struct {
	// Location is where it failed, such as "body.source" or "header.Idempotency-Key".
	Location string `json:"location"`
	Message  string `json:"message"`
	// Value is the value found there, as JSON decodes it.
	Value any `json:"value"`
}

// Error reads "daybook: 422 Unprocessable Entity: validation failed (body.source: expected …)".
func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "daybook: %d %s", p.StatusCode, p.Title)
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	for i, e := range p.Errors {
		sep := "; "
		if i == 0 {
			sep = " ("
		}
		b.WriteString(sep + e.Location + ": " + e.Message)
	}
	if len(p.Errors) > 0 {
		b.WriteString(")")
	}
	return b.String()
}

// HasType reports whether the problem's type is name or a URI whose last segment is name:
// HasType("insufficient-funds") holds for "tag:daybook.dev,2026:problems/insufficient-funds".
func (p *Problem) HasType(name string) bool {
	return p.Type == name || strings.HasSuffix(p.Type, "/"+name)
}

// readProblem decodes resp, an answer outside 2xx, into a Problem; it never fails.
func readProblem(resp *http.Response) *Problem {
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, problemBodyMax))
	var p Problem
	if readErr != nil || !isJSON(resp.Header.Get("Content-Type")) || json.Unmarshal(body, &p) != nil {
		p = Problem{Detail: strings.ToValidUTF8(truncate(strings.TrimSpace(string(body)), problemTextMax), "")}
		if readErr != nil && p.Detail == "" {
			p.Detail = "read body: " + readErr.Error()
		}
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(resp.StatusCode)
	}
	if p.Status == 0 {
		p.Status = resp.StatusCode
	}
	p.StatusCode = resp.StatusCode
	p.Header = resp.Header
	return &p
}

// isJSON accepts application/problem+json, application/json and any other +json type.
func isJSON(contentType string) bool {
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mediaType == "application/json" || strings.HasSuffix(mediaType, "+json"))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
