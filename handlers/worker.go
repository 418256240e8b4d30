package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/breaker"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/replay"
	"github.com/daybook/daybook/transport"
)

// Config configures the worker.
type Config struct {
	Topics transport.Topics

	MaxAttempts          int
	RetryBackoff         time.Duration
	RetryBackoffMax      time.Duration
	StuckAfter           time.Duration
	RescueInterval       time.Duration
	BreakerProbeInterval time.Duration
	AttemptTimeout       time.Duration
	ShutdownTimeout      time.Duration
	// Flushers process batches in parallel; BatchMax bounds one batch. A batch
	// holds what the consumers handed over while the previous one ran.
	Flushers int
	BatchMax int
	// GaugeInterval is how often queue depth, DLQ depth and outbox backlog are read.
	GaugeInterval time.Duration
	// DedupTTL is how long a handled message's uuid is remembered.
	DedupTTL time.Duration
	// NoDedup leaves the Redis dedup middleware out: redeliveries then reach
	// Postgres, whose attempt compare-and-set skips them.
	NoDedup bool
	// ReconcileInterval is how often the ledger is reconciled (0 = never).
	ReconcileInterval time.Duration
	// Now is the services' clock (default time.Now): the rescuer's cutoff is
	// Now minus StuckAfter, so a test moves time instead of aging rows.
	Now func() time.Time
}

// Validate fills defaults and checks the settings.
func (c *Config) Validate() error {
	if c.MaxAttempts <= 0 {
		return errors.New("worker: MaxAttempts must be positive")
	}
	if c.RetryBackoff <= 0 || c.RetryBackoffMax < c.RetryBackoff || c.StuckAfter <= 0 || c.RescueInterval <= 0 ||
		c.BreakerProbeInterval <= 0 || c.AttemptTimeout <= 0 || c.ShutdownTimeout <= 0 {
		return errors.New("worker: every interval must be positive (and RetryBackoffMax >= RetryBackoff)")
	}
	if c.Flushers == 0 {
		c.Flushers = 2
	}
	if c.BatchMax == 0 {
		c.BatchMax = 256
	}
	if c.BatchMax > ingest.BatchSizeMax || c.Flushers < 0 || c.BatchMax < 0 {
		return fmt.Errorf("worker: BatchMax must be within 1..%d and Flushers positive", ingest.BatchSizeMax)
	}
	if c.GaugeInterval == 0 {
		c.GaugeInterval = 5 * time.Second
	}
	if c.DedupTTL == 0 {
		c.DedupTTL = 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Deps are the worker's connections and collaborators.
type Deps struct {
	Pool *pgxpool.Pool
	// Work carries the work topic, Log the event log (transport.EventLog):
	// Redis Streams or SQS, chosen by the caller.
	Work transport.Work
	Log  transport.EventLog
	// Redis keeps the dedup middleware's keys; the worker runs without it
	// when it is down (SQS mode), Postgres then catching redeliveries.
	Redis   redis.UniversalClient
	Archive archive.Store
	Metrics *observability.Metrics
	Logger  *slog.Logger
}

// Worker consumes and processes ingested events.
type Worker struct {
	deps      Deps
	cfg       Config
	events    *ingest.Store
	dead      *deadletter.Store
	processor *ingest.Processor
	replayer  *replay.Replayer
	breaker   *breaker.Breaker
	drain     *drainGate
	coalescer *coalescer
	dedup     *dedup // nil with NoDedup
	// subscribed is set once every consumer has subscribed.
	subscribed atomic.Bool
}

// NewWorker builds a worker; Run starts it.
func NewWorker(deps Deps, cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Work == nil || deps.Log == nil {
		return nil, errors.New("worker: Work and Log transports are required")
	}
	events := ingest.NewStore(deps.Pool)
	dead := deadletter.NewStore(deps.Pool)
	processor, err := ingest.NewProcessor(deps.Pool, events, deps.Archive, ingest.ProcessorConfig{MaxAttempts: cfg.MaxAttempts, Logger: deps.Logger})
	if err != nil {
		return nil, err
	}
	br, err := breaker.New(breaker.Config{
		Probe:         deps.Pool.Ping,
		ProbeInterval: cfg.BreakerProbeInterval,
		OnChange: func(s breaker.State, cause error) {
			deps.Metrics.CircuitBreakerState.WithLabelValues("postgres").Set(float64(s))
			if s == breaker.Open {
				deps.Logger.Warn("circuit breaker open: Postgres unreachable, consumers paused", "error", cause)
			} else {
				deps.Logger.Info("circuit breaker closed: Postgres is back, consumers resume")
			}
		},
	})
	if err != nil {
		return nil, err
	}
	deps.Metrics.CircuitBreakerState.WithLabelValues("postgres").Set(0)
	w := &Worker{
		deps: deps, cfg: cfg, events: events, dead: dead, processor: processor,
		replayer: replay.New(events, dead, transport.Sender{Pub: deps.Work.Publisher()}, cfg.Topics.Events()),
		breaker:  br, drain: &drainGate{},
		coalescer: newCoalescer(processor, deps.Metrics.BatchSize, cfg.Flushers, cfg.BatchMax, cfg.AttemptTimeout),
	}
	if !cfg.NoDedup {
		w.dedup = newDedup(deps.Redis, cfg.Topics.Prefix, cfg.DedupTTL, deps.Metrics)
	}
	return w, nil
}

// Run consumes until ctx ends, then drains: it stops taking messages,
// lets the ones in flight finish and be acknowledged (bounded by
// ShutdownTimeout), and closes the router.
func (w *Worker) Run(ctx context.Context) error {
	defer w.breaker.Close()
	if err := w.deps.Work.Open(ctx); err != nil {
		return fmt.Errorf("open work transport: %w", err)
	}
	defer w.deps.Work.Close() // after the router closed: no consumer is left
	router, err := w.newRouter()
	if err != nil {
		return err
	}
	services := w.maintenance()

	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(context.WithoutCancel(ctx)) }()
	go func() {
		select {
		case <-router.Running():
			w.subscribed.Store(true)
		case <-ctx.Done():
		}
	}()

	for _, s := range services {
		s.Start(context.WithoutCancel(ctx))
	}
	stopServices := func() {
		for _, s := range services {
			s.Stop()
		}
	}

	select {
	case <-ctx.Done():
	case err := <-routerDone:
		stopServices()
		return fmt.Errorf("router stopped: %w", err)
	}

	w.deps.Logger.Info("worker draining", "timeout", w.cfg.ShutdownTimeout.String())
	start := time.Now()
	drainCtx, cancel := context.WithTimeout(context.Background(), w.cfg.ShutdownTimeout)
	defer cancel()
	inFlight := w.drain.Drain(drainCtx)
	stopServices()
	closeErr := router.Close()
	if err := <-routerDone; err != nil {
		w.deps.Logger.Error("router stopped with an error", "error", err)
	}
	w.deps.Logger.Info("worker stopped", "drained_in", time.Since(start).String(), "unfinished", inFlight)
	if closeErr != nil {
		return fmt.Errorf("close router: %w", closeErr)
	}
	return nil
}

// service is a background loop the worker starts with its consumers and
// stops after draining them.
type service interface {
	Start(ctx context.Context)
	Stop()
}

// maintenance builds the worker's background services: the outbox relay,
// the stuck-event rescuer, the gauges, the transport's own (trimming a
// stream) and the scheduled reconciliation (when an interval is set).
func (w *Worker) maintenance() []service {
	services := []service{
		newRelay(w.deps.Pool, w.deps.Log.LogPublisher(), w.deps.Logger),
		newRescuer(w.replayer, w.cfg.StuckAfter, w.cfg.RescueInterval, w.cfg.Now, w.deps.Metrics, w.deps.Logger),
		newGauges(w.deps.Pool, w.deps.Work, w.dead, w.cfg.GaugeInterval, w.deps.Metrics, w.deps.Logger),
	}
	for _, s := range w.deps.Work.Services() {
		services = append(services, s)
	}
	if w.cfg.ReconcileInterval > 0 {
		services = append(services, newReconciler(w.deps.Pool, w.cfg.ReconcileInterval, w.deps.Metrics, w.deps.Logger))
	}
	return services
}

// middlewares is the chain every consumer runs, outermost first. The drain
// gate stops new messages at shutdown; the correlation id reaches every log
// line below; shutdown errors are marked so the poison queue lets them pass;
// dedup skips a message handled before (a redelivery after a lost ack) and
// records one only once handled; Retry runs attempts with backoff and hands
// the final failure to PoisonQueue; Recoverer turns a panic into an ordinary
// failed attempt; the breaker, innermost, absorbs Postgres outages so that
// they never count as attempts. No Timeout middleware: inside PoisonQueue its
// cancelled context reaches the poison publish, which then fails and loses the
// letter; each attempt bounds itself instead.
//
// source is the topic a dead letter is replayed onto; dedup applies to the
// ingest consumers only (its keys are message uuids of one consumer group).
func (w *Worker) middlewares(source string, withDedup bool) ([]message.HandlerMiddleware, error) {
	poison, err := middleware.PoisonQueueWithFilter(&deadLetterPublisher{worker: w, source: source}, w.cfg.Topics.Dead(), func(err error) bool {
		return !errors.Is(err, errShuttingDown)
	})
	if err != nil {
		return nil, fmt.Errorf("poison queue: %w", err)
	}
	retry := middleware.Retry{
		MaxRetries:      w.cfg.MaxAttempts - 1,
		InitialInterval: w.cfg.RetryBackoff,
		MaxInterval:     w.cfg.RetryBackoffMax,
		Multiplier:      2,
		// Permanent failures (rule violations, the last stored attempt) skip
		// the remaining retries and go straight to the poison queue.
		ShouldRetry:         func(p middleware.RetryParams) bool { return !ingest.IsPermanent(p.Err) },
		ResetContextOnRetry: true,
	}
	chain := []message.HandlerMiddleware{w.drain.Middleware, correlation, tracing, markShutdown}
	if withDedup && w.dedup != nil {
		chain = append(chain, w.dedup.Middleware)
	}
	return append(chain, poison, retry.Middleware, middleware.Recoverer, w.breaker.Middleware), nil
}

// newRouter builds the router: the work consumers, the event-log projector
// and the movers of what the wire redrove.
func (w *Worker) newRouter() (*message.Router, error) {
	wmLogger := transport.Logger(w.deps.Logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: w.cfg.ShutdownTimeout}, wmLogger)
	if err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	chain, err := w.middlewares(w.cfg.Topics.Events(), true)
	if err != nil {
		return nil, err
	}
	consumers, err := w.deps.Work.Consumers()
	if err != nil {
		return nil, err
	}
	for _, c := range consumers {
		h := router.AddConsumerHandler(c.Name, c.Topic, c.Subscriber, w.handle)
		h.AddMiddleware(append(c.Middleware, chain...)...)
	}
	if err := w.addProjector(router); err != nil {
		return nil, err
	}
	redriven, err := w.deps.Work.Redriven()
	if err != nil {
		return nil, err
	}
	for _, c := range redriven {
		h := router.AddConsumerHandler(c.Name, c.Topic, c.Subscriber, w.moveRedriven(c))
		h.AddMiddleware(append(c.Middleware, w.drain.Middleware, correlation, markShutdown, w.breaker.Middleware)...)
	}
	return router, nil
}

// moveRedriven records a message the wire gave up on as a dead letter, to be
// replayed onto c.ReplayTopic; the ack that follows removes it from the
// wire's DLQ. Recording is idempotent by message uuid, so a move interrupted
// before the ack is harmless when the message comes back.
func (w *Worker) moveRedriven(c transport.Consumer) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		_, err := w.recordDeadLetter(msg, c.ReplayTopic, c.DeadReason)
		return err
	}
}

// handle processes one message: one attempt.
func (w *Worker) handle(msg *message.Message) error {
	start := time.Now()
	outcome, err := w.process(msg)
	w.deps.Metrics.ProcessingDuration.Observe(time.Since(start).Seconds())
	if err == nil {
		w.deps.Metrics.EventsProcessed.WithLabelValues(outcomeStatus[outcome]).Inc()
		if w.deps.Logger.Enabled(msg.Context(), slog.LevelDebug) { // most messages: no logger built
			w.deps.Logger.Debug("event processed", "message_uuid", msg.UUID,
				"correlation_id", observability.CorrelationID(msg.Context()), "outcome", string(outcome))
		}
		return nil
	}
	log := w.deps.Logger.With("message_uuid", msg.UUID, "correlation_id", observability.CorrelationID(msg.Context()))
	switch {
	case ingest.IsPermanent(err):
		w.deps.Metrics.EventsProcessed.WithLabelValues(string(ingest.StatusFailed)).Inc()
		log.Warn("event failed for good", "error", err)
	default:
		w.deps.Metrics.EventsProcessed.WithLabelValues("RETRY").Inc()
		log.Info("attempt failed", "error", err)
	}
	return err
}

func (w *Worker) process(msg *message.Message) (ingest.Outcome, error) {
	if problem := msg.Metadata.Get(transport.MetaDecodeError); problem != "" {
		return "", fmt.Errorf("malformed message %s: %s", msg.UUID, problem)
	}
	e, err := ingest.Decode(msg.Payload)
	if err != nil {
		return "", fmt.Errorf("message %s: %w", msg.UUID, err)
	}
	// Only the first attempt at a first delivery may complete at first sight:
	// the Retry middleware's next attempts take the recorded path at once.
	first := transport.FirstDelivery(msg)
	transport.SetFirstDelivery(msg, false)
	return w.coalescer.process(ingest.Delivery{Event: e, First: first, Raw: msg.Payload})
}

var outcomeStatus = map[ingest.Outcome]string{
	ingest.OutcomeCompleted: string(ingest.StatusCompleted),
	ingest.OutcomeDuplicate: "DUPLICATE",
	ingest.OutcomeSkipped:   "SKIPPED",
}
