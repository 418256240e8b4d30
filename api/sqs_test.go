package api_test

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// In SQS mode Redis is only the fast path: with it unreachable the API still
// accepts, answers duplicates of stored events from Postgres, and stays ready.
func TestIngest_SQSModeFailsOpenWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	opt, proxy := withSQS(t)
	s := newServer(t, opt, withRate(0.001), func(s *serverSetup) { s.gate.Burst = 2 })

	first := requireAccepted(t, s.ingest(`{"event_id":"e-1","source":"shop","type":"t","payload":{}}`), "e-1")
	again := s.ingest(`{"event_id":"e-1","source":"shop","type":"t","payload":{}}`)
	requireDuplicate(t, again, first, "e-1", "PENDING")
	stored := s.storeEvent("e-stored")

	proxy.Cut()
	// The bucket (burst 2) is spent: with Redis down there is no limit.
	requireAccepted(t, s.ingest(`{"event_id":"e-2","source":"shop","type":"t","payload":{}}`), "e-2")
	requireAccepted(t, s.ingest(`{"event_id":"e-3","source":"shop","type":"t","payload":{}}`), "e-3")
	requireDuplicate(t, s.ingest(`{"event_id":"e-stored","source":"shop","type":"t","payload":{}}`), stored.ID.String(), "e-stored", "PROCESSING")
	require.InDelta(t, 3, testutil.ToFloat64(s.metrics.RedisFailOpen.WithLabelValues("ingest")), 0)

	r := s.get("/ready")
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.body)
	checks := fields(t, r)["checks"].(map[string]any)
	require.Equal(t, "ok", checks["postgres"])
	require.Contains(t, checks["redis"], "degraded (ingestion fails open)")
}
