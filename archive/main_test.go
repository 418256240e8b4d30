package archive

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind. The S3
// tests close their HTTP transports' idle connections (Close, or a cleanup),
// so no net/http goroutine needs ignoring.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
