package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/daybook/daybook/apikey"
)

// Security schemes of the document. An operation's declared requirement is
// the only thing authorize reads, so the document and the checks cannot drift.
const (
	schemeBearer = "bearer"
	schemeAPIKey = "apiKey"
)

func securitySchemes() map[string]*huma.SecurityScheme {
	return map[string]*huma.SecurityScheme{
		schemeBearer: {
			Type: "http", Scheme: "bearer",
			Description: "An API key (`daybook keys create`) as `Authorization: Bearer <key>`. " +
				"Each operation lists the scope it needs; a key without it gets 403.",
		},
		schemeAPIKey: {
			Type: "apiKey", In: "header", Name: "X-API-Key",
			Description: "The same API key, for ingest senders that cannot set Authorization.",
		},
	}
}

// requires declares that an operation needs a key holding scope.
func requires(scope string) []map[string][]string {
	return []map[string][]string{{schemeBearer: {scope}}}
}

// requiresIngest is requires for the ingest routes, which also take the key
// as X-API-Key.
func requiresIngest(scope string) []map[string][]string {
	return []map[string][]string{{schemeBearer: {scope}}, {schemeAPIKey: {scope}}}
}

// public marks an operation that needs no credentials (an empty security
// requirement), so the document says so instead of leaving it undefined.
var public = []map[string][]string{{}}

// AuthMode says whether requests must carry keys.
type AuthMode int

const (
	// AuthKeys requires a key holding each operation's scope as soon as one key
	// exists; with none (a fresh install) the API is open, and the process
	// serves it on a loopback address only (cmd/daybook enforces that).
	AuthKeys AuthMode = iota
	// AuthOff serves every route to anyone (DAYBOOK_AUTH=off).
	AuthOff
)

// Keyring is what requests are authenticated against: *apikey.Keyring.
type Keyring interface {
	// Authenticate returns the key's record, or apikey.ErrMissing,
	// ErrUnknown or ErrRevoked.
	Authenticate(key string) (apikey.Key, error)
	// Open reports that no key exists at all.
	Open() bool
}

type keyContextKey struct{}

// keyFrom returns the key that authenticated the request, if any.
func keyFrom(ctx context.Context) (apikey.Key, bool) {
	k, ok := ctx.Value(keyContextKey{}).(apikey.Key)
	return k, ok
}

// keyIDFrom is the id recorded as the author of what the request creates.
func keyIDFrom(ctx context.Context) string {
	k, _ := keyFrom(ctx)
	return k.ID
}

// checkDeclarations refuses, at start-up, an operation whose security the
// document does not state or states in a shape authorize does not enforce.
func checkDeclarations(op *huma.Operation) {
	if len(op.Security) == 0 {
		panic(fmt.Sprintf("operation %s declares no security: use requires(scope) or public", op.OperationID))
	}
	for _, req := range op.Security {
		if len(req) > 1 {
			panic(fmt.Sprintf("operation %s: a requirement with several schemes is not enforced", op.OperationID))
		}
		for scheme := range req {
			if _, ok := securitySchemes()[scheme]; !ok {
				panic(fmt.Sprintf("operation %s: unknown security scheme %q", op.OperationID, scheme))
			}
		}
	}
}

func isPublic(security []map[string][]string) bool {
	return slices.ContainsFunc(security, func(req map[string][]string) bool { return len(req) == 0 })
}

// authorize enforces the operation's declared security before anything is
// parsed, so a refused request costs almost nothing: 401 for a missing,
// unknown or revoked key, 403 naming the scope a known key lacks.
func (s *Server) authorize(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	if isPublic(op.Security) || s.cfg.Auth == AuthOff || s.cfg.Keys == nil || s.cfg.Keys.Open() {
		next(ctx)
		return
	}
	for _, req := range op.Security {
		for scheme, scopes := range req {
			secret := credential(ctx, scheme)
			if secret == "" {
				continue
			}
			key, err := s.cfg.Keys.Authenticate(secret)
			if err != nil {
				s.refuse(ctx, http.StatusUnauthorized, authReason(err), "the API key is "+authReason(err))
				return
			}
			for _, scope := range scopes {
				if !key.Has(scope) {
					s.refuse(ctx, http.StatusForbidden, "scope", "the key "+key.ID+" lacks the scope "+scope,
						&huma.ErrorDetail{Location: "header.Authorization", Message: "missing scope " + scope, Value: scope})
					return
				}
			}
			next(huma.WithValue(ctx, keyContextKey{}, key))
			return
		}
	}
	how := "Authorization: Bearer <key>"
	if slices.ContainsFunc(op.Security, func(req map[string][]string) bool { _, ok := req[schemeAPIKey]; return ok }) {
		how += " or X-API-Key: <key>"
	}
	s.refuse(ctx, http.StatusUnauthorized, "missing", "this operation needs an API key: "+how)
}

// credential reads the key a scheme carries; "" when the request has none.
func credential(ctx huma.Context, scheme string) string {
	switch scheme {
	case schemeBearer:
		// Clients spell the scheme name in any case; HTTP says it is case-insensitive.
		name, token, ok := strings.Cut(ctx.Header("Authorization"), " ")
		if ok && strings.EqualFold(name, "Bearer") {
			return strings.TrimSpace(token)
		}
	case schemeAPIKey:
		return ctx.Header("X-API-Key")
	}
	return ""
}

func authReason(err error) string {
	switch {
	case errors.Is(err, apikey.ErrRevoked):
		return "revoked"
	case errors.Is(err, apikey.ErrMissing):
		return "missing"
	}
	return "unknown"
}

// refuse answers a refused request and counts it. The key itself never
// reaches the answer, a log line or a label.
func (s *Server) refuse(ctx huma.Context, status int, reason, detail string, errs ...error) {
	s.deps.Metrics.AuthFailures.WithLabelValues(reason).Inc()
	if ingestsEvents(ctx.Operation()) {
		s.deps.Metrics.EventsIngested.WithLabelValues("unauthorized").Inc()
	}
	if status == http.StatusUnauthorized {
		ctx.SetHeader("WWW-Authenticate", `Bearer realm="daybook"`)
	}
	_ = huma.WriteErr(s.api, ctx, status, detail, errs...)
}

// ingestsEvents reports an operation that needs events:write: its refusals
// count in daybook_events_ingested_total too.
func ingestsEvents(op *huma.Operation) bool {
	for _, req := range op.Security {
		for _, scopes := range req {
			if slices.Contains(scopes, apikey.ScopeEventsWrite) {
				return true
			}
		}
	}
	return false
}

// register is huma.Register that documents the refusals authorize answers:
// 401 and 403 on every operation that needs a key.
func register[I, O any](s *Server, op huma.Operation, handler func(context.Context, *I) (*O, error)) {
	if !isPublic(op.Security) {
		op.Errors = appendMissing(op.Errors, http.StatusUnauthorized, http.StatusForbidden)
	}
	huma.Register(s.api, op, handler)
}

func appendMissing(codes []int, more ...int) []int {
	for _, c := range more {
		if !slices.Contains(codes, c) {
			codes = append(codes, c)
		}
	}
	slices.Sort(codes)
	return codes
}
