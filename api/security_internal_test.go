package api

import (
	"testing"

	"github.com/danielgtaylor/huma/v2"
	"github.com/stretchr/testify/require"
)

// A route added without a security declaration must not start: New runs
// checkDeclarations over every operation.
func TestCheckDeclarations_RefusesAnOperationThatDeclaresNoSecurity(t *testing.T) {
	t.Parallel()
	require.PanicsWithValue(t, "operation newRoute declares no security: use requires(scope) or public", func() {
		checkDeclarations(&huma.Operation{OperationID: "newRoute"})
	})
	require.Panics(t, func() {
		checkDeclarations(&huma.Operation{OperationID: "both", Security: []map[string][]string{{schemeBearer: {"admin"}, schemeAPIKey: {"admin"}}}})
	}, "a requirement naming two schemes would need both; authorize does not enforce that")
	require.Panics(t, func() {
		checkDeclarations(&huma.Operation{OperationID: "oauth", Security: []map[string][]string{{"oauth2": {"admin"}}}})
	})
	require.NotPanics(t, func() { checkDeclarations(&huma.Operation{OperationID: "ok", Security: requires("admin")}) })
	require.NotPanics(t, func() { checkDeclarations(&huma.Operation{OperationID: "open", Security: public}) })
}
