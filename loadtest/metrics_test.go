package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSumSeries_SumsCompletedAcrossLabelSets(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		page      string
		want      float64
		wantFound bool
		wantErr   string
	}{
		{
			name: "one series, with HELP and TYPE",
			page: `# HELP daybook_events_processed_total Events processed by the worker.
# TYPE daybook_events_processed_total counter
daybook_events_processed_total{status="COMPLETED"} 1234
daybook_events_processed_total{status="FAILED"} 5
`,
			want: 1234, wantFound: true,
		},
		{
			name: "summed over other labels",
			page: `daybook_events_processed_total{source="order_updates",status="COMPLETED"} 10
daybook_events_processed_total{source="payments",status="COMPLETED"} 32
daybook_events_processed_total{source="payments",status="FAILED"} 99
`,
			want: 42, wantFound: true,
		},
		{
			name: "float and exponent values, with a timestamp",
			page: `daybook_events_processed_total{status="COMPLETED"} 1.5e+06 1700000000000
daybook_events_processed_total{status="COMPLETED",shard="2"} 0.5
`,
			want: 1500000.5, wantFound: true,
		},
		{
			name: "other metrics and longer names sharing the prefix are not summed",
			page: `daybook_events_processed_total_created{status="COMPLETED"} 1.7e9
daybook_events_processed{status="COMPLETED"} 1000
daybook_events_ingested_total{result="accepted",status="COMPLETED"} 1000
xdaybook_events_processed_total{status="COMPLETED"} 1000
daybook_events_processed_total{status="COMPLETED"} 3
`,
			want: 3, wantFound: true,
		},
		{
			name: "label values with escapes, commas and braces",
			page: `daybook_events_processed_total{note="a \"quoted\", {braced} \\ value\n",status="COMPLETED"} 4
daybook_events_processed_total{note="status=\"COMPLETED\"",status="FAILED"} 100
`,
			want: 4, wantFound: true,
		},
		{
			name: "spaces around labels and a trailing comma",
			page: `daybook_events_processed_total{ status = "COMPLETED" , } 8
`,
			want: 8, wantFound: true,
		},
		{
			name: "label match is exact and case sensitive",
			page: `daybook_events_processed_total{status="completed"} 1
daybook_events_processed_total{status="COMPLETED_LATE"} 1
daybook_events_processed_total{state="COMPLETED"} 1
daybook_events_processed_total 1
`,
			want: 0, wantFound: false,
		},
		{
			name: "series not exported yet",
			page: `# HELP daybook_events_processed_total Events processed by the worker.
# TYPE daybook_events_processed_total counter
go_goroutines 12
`,
			want: 0, wantFound: false,
		},
		{
			name:      "empty page",
			page:      "",
			want:      0,
			wantFound: false,
		},
		{
			name: "a malformed line of another metric is skipped",
			page: `some_other{oops 1
daybook_events_processed_total{status="COMPLETED"} 2
`,
			want: 2, wantFound: true,
		},
		{
			name:    "unterminated label value",
			page:    `daybook_events_processed_total{status="COMPLETED} 1`,
			wantErr: "unterminated quoted value",
		},
		{
			name:    "unquoted label value",
			page:    `daybook_events_processed_total{status=COMPLETED} 1`,
			wantErr: "value not quoted",
		},
		{
			name:    "missing value",
			page:    `daybook_events_processed_total{status="COMPLETED"}`,
			wantErr: "no value",
		},
		{
			name:    "value is not a number",
			page:    `daybook_events_processed_total{status="COMPLETED"} many`,
			wantErr: "value",
		},
		{
			name:    "label set not closed",
			page:    `daybook_events_processed_total{status="COMPLETED" 1`,
			wantErr: "expected ',' or '}'",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			got, found, err := sumSeries(strings.NewReader(tt.page), processedMetric, processedStatusLabel, processedCompleted)

			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.wantFound, found)
		})
	}
}

func TestSumSeries_RefusesALineLongerThanTheLimit(t *testing.T) {
	t.Parallel()
	page := `daybook_events_processed_total{status="COMPLETED",pad="` + strings.Repeat("x", metricsLineMax) + `"} 1`

	_, _, err := sumSeries(strings.NewReader(page), processedMetric, processedStatusLabel, processedCompleted)

	require.ErrorContains(t, err, "read metrics")
}
