// Package observability owns Daybook's Prometheus metrics (their names are
// part of the outside contract) and its JSON logger. The dashboards and
// alert rules live beside it in this directory.
package observability

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector the service exports.
type Metrics struct {
	Registry *prometheus.Registry

	EventsIngested      *prometheus.CounterVec   // result: accepted|duplicate|rate_limited|invalid|unauthorized|unavailable
	EventsProcessed     *prometheus.CounterVec   // status: COMPLETED|FAILED|DUPLICATE|SKIPPED|RETRY
	ProcessingDuration  prometheus.Histogram     // one processing attempt
	BatchSize           prometheus.Histogram     // events per worker batch (group commit)
	QueueDepth          *prometheus.GaugeVec     // queue: messages waiting (lag + pending)
	DLQDepth            prometheus.Gauge         // dead letters not yet replayed
	OutboxBacklog       prometheus.Gauge         // outbox rows not yet relayed
	TransfersTotal      *prometheus.CounterVec   // result
	LedgerTxRetries     *prometheus.CounterVec   // reason
	ReconcileMismatches prometheus.Gauge         // mismatches found by the last reconcile
	CircuitBreakerState *prometheus.GaugeVec     // name: 0 closed, 1 open
	StuckRescued        prometheus.Counter       // events the rescuer re-enqueued
	RedisFailOpen       *prometheus.CounterVec   // check: events let through while Redis could not answer
	AuthFailures        *prometheus.CounterVec   // reason: requests refused by authentication or authorization
	HTTPRequestDuration *prometheus.HistogramVec // method, route, code
}

// NewMetrics creates the collectors on a fresh registry (one per process or test).
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		EventsIngested: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "daybook_events_ingested_total", Help: "Ingest requests' events by result.",
		}, []string{"result"}),
		EventsProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "daybook_events_processed_total", Help: "Processing outcomes by status.",
		}, []string{"status"}),
		ProcessingDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "daybook_event_processing_seconds", Help: "Duration of one processing attempt.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "daybook_worker_batch_size", Help: "Events processed together in one worker batch.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500},
		}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "daybook_queue_depth", Help: "Messages waiting on the queue: not yet delivered plus delivered but unacknowledged.",
		}, []string{"queue"}),
		DLQDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "daybook_dlq_depth", Help: "Dead letters not yet replayed.",
		}),
		OutboxBacklog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "daybook_outbox_backlog", Help: "Outbox messages not yet relayed to the queue.",
		}),
		TransfersTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "daybook_transfers_total", Help: "Transfer requests by result.",
		}, []string{"result"}),
		LedgerTxRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "daybook_ledger_tx_retries_total", Help: "Ledger transactions retried, by reason.",
		}, []string{"reason"}),
		ReconcileMismatches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "daybook_reconcile_mismatches", Help: "Mismatches found by the last reconciliation.",
		}),
		CircuitBreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "daybook_circuit_breaker_state", Help: "Circuit breaker state: 0 closed, 1 open.",
		}, []string{"name"}),
		StuckRescued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "daybook_stuck_events_rescued_total", Help: "Events re-enqueued by the stuck-event rescuer.",
		}),
		RedisFailOpen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "daybook_redis_fail_open_total",
			Help: "Events admitted without the Redis rate limit and fast duplicate check because Redis could not answer (SQS mode).",
		}, []string{"check"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "daybook_auth_failures_total",
			Help: "Requests refused: missing, unknown or revoked key, missing scope, missing or wrong webhook signature.",
		}, []string{"reason"}),
		HTTPRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "daybook_http_request_duration_seconds", Help: "HTTP request duration by route and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "route", "code"}),
	}
	m.Registry.MustRegister(
		m.EventsIngested, m.EventsProcessed, m.ProcessingDuration, m.BatchSize, m.QueueDepth, m.DLQDepth, m.OutboxBacklog,
		m.TransfersTotal, m.LedgerTxRetries, m.ReconcileMismatches, m.CircuitBreakerState, m.StuckRescued,
		m.RedisFailOpen, m.AuthFailures, m.HTTPRequestDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
