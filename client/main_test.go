package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test closes what it opens in t.Cleanup (HTTP server and its client's idle connections,
// the pgx pool, the Redis client), so no goroutine may be left over.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
