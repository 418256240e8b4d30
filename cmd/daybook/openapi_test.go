package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// api/openapi.yaml is committed (clients are generated from it); it must be
// what the code documents. Regenerate with `make openapi`.
func TestOpenAPI_CommittedDocumentMatchesTheCode(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, printOpenAPI(nil, &out))
	committed, err := os.ReadFile("../../api/openapi.yaml")
	require.NoError(t, err)
	require.Equal(t, string(committed), out.String(), "api/openapi.yaml is stale: run make openapi")
}
