package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoConfig is a small run: 200 events in 1s.
func echoConfig(batch int) Config {
	return Config{
		Mode:           modeEcho,
		Rate:           200,
		Duration:       time.Second,
		Batch:          batch,
		Workers:        8,
		Source:         "order_updates",
		RequestTimeout: 5 * time.Second,
	}
}

func TestEchoBaseline_EveryScheduledEventIsAccountedFor(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name         string
		batch        int
		wantRequests int64
		wantStatus   string
	}{
		{"single events", 1, 200, "202"},
		{"batches of 10", 10, 20, "202"},
		{"batches of 30 leave a remainder of 20", 30, 7, "202"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := echoConfig(tt.batch)
			require.NoError(t, cfg.Validate())

			rep, err := runEchoBaseline(t.Context(), cfg)

			require.NoError(t, err)
			e, r := rep.Events, rep.Requests
			require.Equal(t, int64(200), e.Scheduled)
			require.Equal(t, tt.wantRequests, r.Scheduled)
			require.Equal(t, e.Scheduled, e.Accepted+e.Duplicate+e.Errors+e.Dropped, "events: %+v", e)
			require.Equal(t, e.Sent, e.Accepted+e.Duplicate+e.Errors)
			require.Equal(t, r.Scheduled, r.Sent+r.Dropped)
			require.Zero(t, e.Errors, "examples: %v", rep.ErrorExamples)
			require.Zero(t, e.Duplicate)
			require.Positive(t, e.Accepted)
			require.Equal(t, r.Sent, r.ByStatus[tt.wantStatus])
			require.Equal(t, int(r.Sent), rep.Latency.Count)
			require.LessOrEqual(t, rep.Latency.P50, rep.Latency.P99)
			require.LessOrEqual(t, rep.Latency.P99, rep.Latency.Max)
			require.Nil(t, rep.Drain)
			require.True(t, rep.OK)
		})
	}
}
