package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRun_BadFlagsExitTwoBeforeAnyTraffic(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no mode", nil, "usage"},
		{"unknown mode", []string{"soak"}, `unknown mode "soak"`},
		{"unknown flag", []string{"ingest", "-nope"}, "flag provided but not defined"},
		{"stray argument", []string{"ingest", "extra"}, "unexpected arguments"},
		{"zero rate", []string{"ingest", "-rate", "0"}, "-rate must be"},
		{"zero batch", []string{"ingest", "-batch", "0"}, "-batch must be"},
		{"batch over the API limit", []string{"ingest", "-batch", "1001"}, "-batch must be"},
		{"zero workers", []string{"echo-baseline", "-workers", "0"}, "-workers must be"},
		{"negative duration", []string{"ingest", "-duration", "-1s"}, "-duration must be"},
		{"duration over the limit", []string{"ingest", "-duration", "2h"}, "-duration must be"},
		{"negative drain timeout", []string{"ingest", "-drain-timeout", "-1s"}, "-drain-timeout must be"},
		{"empty source", []string{"ingest", "-source", ""}, "-source must not be empty"},
		{"too many requests to keep", []string{"ingest", "-rate", "1000000", "-duration", "1h"}, "requests; must be"},
		{"url flag is not an echo flag", []string{"echo-baseline", "-url", "http://127.0.0.1:1"}, "flag provided but not defined"},
		{"public address", []string{"ingest", "-url", "http://10.1.2.3:8080"}, "not a loopback address"},
		{"unspecified address", []string{"ingest", "-url", "http://0.0.0.0:8080"}, "not a loopback address"},
		{"no scheme", []string{"ingest", "-url", "127.0.0.1:8080"}, "refusing -url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer

			code := run(tt.args, &stdout, &stderr)

			require.Equal(t, exitBad, code, "stderr: %s", stderr.String())
			require.Contains(t, stderr.String(), tt.wantErr)
			require.Empty(t, stdout.String())
		})
	}
}

func TestRun_HelpExitsZero(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer

	require.Equal(t, exitOK, run([]string{"ingest", "-h"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "-drain-timeout")
}
