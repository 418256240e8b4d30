package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/archive"
	"github.com/daybook/daybook/breaker"
	"github.com/daybook/daybook/deadletter"
	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/ingest"
	"github.com/daybook/daybook/observability"
	"github.com/daybook/daybook/queue"
	"github.com/daybook/daybook/replay"
)

// Config configures the worker.
type Config struct {
	Topics queue.Topics
	// SQS, when set, carries the work topic (Topics.Events) on SQS instead of
	// the Redis stream; the event log stays on Redis Streams.
	SQS *queue.SQS
	// Consumers run in parallel: each a stream consumer named
	// ConsumerName-<slot>-i, the slot leased per process (slotLease), or with
	// SQS one receive loop of the subscriber.
	Consumers    int
	ConsumerName string
	// SlotLeaseTTL is how long a crashed process's slot stays taken (default 15s).
	SlotLeaseTTL time.Duration

	MaxAttempts          int
	RetryBackoff         time.Duration
	RetryBackoffMax      time.Duration
	StuckAfter           time.Duration
	RescueInterval       time.Duration
	ClaimIdle            time.Duration
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
	// TrimInterval is how often acknowledged entries are trimmed from the work stream.
	TrimInterval time.Duration
	// ReconcileInterval is how often the ledger is reconciled (0 = never).
	ReconcileInterval time.Duration
	// LogStreamMaxLen bounds the daybook.log stream the outbox relay feeds.
	LogStreamMaxLen int64
	// Now is the services' clock (default time.Now): the rescuer's cutoff is
	// Now minus StuckAfter, so a test moves time instead of aging rows.
	Now func() time.Time
}

// Validate fills defaults and checks the settings.
func (c *Config) Validate() error {
	if c.Consumers <= 0 || c.MaxAttempts <= 0 {
		return errors.New("worker: Consumers and MaxAttempts must be positive")
	}
	if c.ConsumerName == "" {
		return errors.New("worker: ConsumerName is required")
	}
	if c.RetryBackoff <= 0 || c.RetryBackoffMax < c.RetryBackoff || c.StuckAfter <= 0 || c.RescueInterval <= 0 ||
		c.ClaimIdle <= 0 || c.BreakerProbeInterval <= 0 || c.AttemptTimeout <= 0 || c.ShutdownTimeout <= 0 {
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
	if c.TrimInterval == 0 {
		c.TrimInterval = time.Minute
	}
	if c.SlotLeaseTTL == 0 {
		c.SlotLeaseTTL = 15 * time.Second
	}
	if c.LogStreamMaxLen == 0 {
		c.LogStreamMaxLen = 1_000_000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Deps are the worker's connections and collaborators.
type Deps struct {
	Pool *pgxpool.Pool
	// RedisOptions builds one client per consumer: a redisstream subscriber
	// closes its client when it closes.
	RedisOptions *redis.Options
	Redis        redis.UniversalClient
	Archive      archive.Store
	Metrics      *observability.Metrics
	Logger       *slog.Logger
}

// Worker consumes and processes ingested events.
type Worker struct {
	deps      Deps
	cfg       Config
	events    *ingest.Store
	dead      *deadletter.Store
	processor *ingest.Processor
	replayer  *replay.Replayer
	publisher message.Publisher
	breaker   *breaker.Breaker
	drain     *drainGate
	coalescer *coalescer
	// handling holds the uuids of the messages being handled (stream mode).
	handling sync.Map
	// subscribed is set once every consumer has subscribed (and so created its group).
	subscribed atomic.Bool
	// slot makes this process's consumer names its own (0 with SQS, where
	// the work queue has no consumer names).
	slot int
}

// NewWorker builds a worker; Run starts it.
func NewWorker(deps Deps, cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wmLogger := watermill.NewSlogLogger(deps.Logger)
	pub, err := queue.NewRedisPublisher(deps.Redis, map[string]int64{
		cfg.Topics.Named(eventstore.LogTopic): cfg.LogStreamMaxLen,
	}, wmLogger)
	if err != nil {
		return nil, err
	}
	events := ingest.NewStore(deps.Pool)
	dead := deadletter.NewStore(deps.Pool)
	replayPub := pub
	if cfg.SQS != nil {
		if replayPub, err = cfg.SQS.WorkPublisher(cfg.Topics.Events(), pub, wmLogger); err != nil {
			return nil, err
		}
	}
	processor, err := ingest.NewProcessor(deps.Pool, events, deps.Archive, ingest.ProcessorConfig{MaxAttempts: cfg.MaxAttempts})
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
	return &Worker{
		deps: deps, cfg: cfg, events: events, dead: dead, processor: processor,
		replayer:  replay.New(events, dead, queue.Sender{Pub: replayPub}, cfg.Topics.Events()),
		publisher: pub, breaker: br, drain: &drainGate{},
	}, nil
}

// Run consumes until ctx ends, then drains: it stops taking messages,
// lets the ones in flight finish and be acknowledged (bounded by
// ShutdownTimeout), and closes the router.
func (w *Worker) Run(ctx context.Context) error {
	defer w.breaker.Close()
	if w.cfg.SQS == nil {
		lease, err := leaseSlot(ctx, w.deps.Redis, w.cfg.Topics.Prefix, w.cfg.ConsumerName, w.cfg.SlotLeaseTTL, w.deps.Logger)
		if err != nil {
			return err
		}
		defer lease.release() // after the router closed: no consumer of this slot is left
		w.slot = lease.slot
		if n, err := queue.HandBackPending(ctx, w.deps.Redis, w.cfg.Topics.Events(), w.consumerNames(), w.cfg.ClaimIdle+time.Minute); err != nil {
			return err
		} else if n > 0 {
			w.deps.Logger.Info("taking back messages a previous run left pending", "count", n)
		}
	}
	router, err := w.newRouter()
	if err != nil {
		return err
	}
	w.coalescer = newCoalescer(w.processor, w.deps.Metrics.BatchSize, w.cfg.Flushers, w.cfg.BatchMax, w.cfg.AttemptTimeout)
	defer w.coalescer.stop() // after the router: no consumer hands anything over any more

	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(context.WithoutCancel(ctx)) }()
	go func() {
		select {
		case <-router.Running():
			w.subscribed.Store(true)
		case <-ctx.Done():
		}
	}()

	services := w.maintenance()
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

// maintenance builds the worker's background services: the stuck-event
// rescuer, the gauges, the work-stream trimmer (Redis Streams only) and the
// scheduled reconciliation (when an interval is set).
func (w *Worker) maintenance() []service {
	services := []service{
		newRescuer(w.replayer, w.cfg.StuckAfter, w.cfg.RescueInterval, w.cfg.Now, w.deps.Metrics, w.deps.Logger),
		(&gauges{
			pool: w.deps.Pool, redis: w.deps.Redis, topics: w.cfg.Topics, sqs: w.cfg.SQS, dead: w.dead,
			metrics: w.deps.Metrics, logger: w.deps.Logger, subscribed: w.subscribed.Load,
		}).init(w.cfg.GaugeInterval),
	}
	if w.cfg.SQS == nil {
		services = append(services, newTrimmer(w.deps.Redis, w.cfg.Topics.Events(), w.cfg.TrimInterval, w.deps.Logger))
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
	if withDedup {
		dedup := dedup{client: w.deps.Redis, prefix: w.cfg.Topics.Prefix, ttl: w.cfg.DedupTTL, metrics: w.deps.Metrics}
		chain = append(chain, dedup.Middleware)
	}
	return append(chain, poison, retry.Middleware, middleware.Recoverer, w.breaker.Middleware), nil
}

// newRouter builds the router: one handler per consumer, and the outbox relay.
func (w *Worker) newRouter() (*message.Router, error) {
	wmLogger := watermill.NewSlogLogger(w.deps.Logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: w.cfg.ShutdownTimeout}, wmLogger)
	if err != nil {
		return nil, fmt.Errorf("new router: %w", err)
	}
	chain, err := w.middlewares(w.cfg.Topics.Events(), true)
	if err != nil {
		return nil, err
	}
	if w.cfg.SQS != nil {
		if err := w.addSQSConsumers(router, chain, wmLogger); err != nil {
			return nil, err
		}
	} else if err := w.addStreamConsumers(router, chain, wmLogger); err != nil {
		return nil, err
	}
	if err := w.addProjector(router, wmLogger); err != nil {
		return nil, err
	}
	relayPub := queue.PrefixedPublisher{Prefix: w.cfg.Topics.Prefix, Pub: w.publisher}
	if err := eventstore.NewRelay(w.deps.Pool, relayPub, router, wmLogger, eventstore.RelayConfig{}); err != nil {
		return nil, err
	}
	return router, nil
}

// addStreamConsumers consumes the work stream with Consumers stream consumers.
func (w *Worker) addStreamConsumers(router *message.Router, chain []message.HandlerMiddleware, wmLogger watermill.LoggerAdapter) error {
	own := map[string]bool{}
	for _, name := range w.consumerNames() {
		own[name] = true
	}
	startedAt := time.Now()
	// redisstream claims any message idle for ClaimIdle, even one a live
	// consumer is still handling (a breaker pause has no bound). A message
	// held by one of this process's consumers is claimed when it was
	// delivered before the process started (a previous run left it), or when
	// no consumer here is handling it: Redis recorded its delivery but the
	// reply never arrived (connection cut, Redis killed), and nothing else
	// would ever take it back.
	shouldClaim := func(xp redis.XPendingExt) bool {
		if !own[xp.Consumer] || xp.Idle > time.Since(startedAt) {
			return true
		}
		uuid, err := w.entryUUID(xp.ID)
		if err != nil || uuid == "" {
			// Unreadable now (ask again at the next pass), or an entry without
			// a uuid, which cannot be told from one being handled.
			return false
		}
		_, handling := w.handling.Load(uuid)
		return !handling
	}
	for _, name := range w.consumerNames() {
		sub, err := queue.NewRedisSubscriber(w.deps.RedisOptions, queue.SubscriberConfig{Consumer: name, ClaimIdle: w.cfg.ClaimIdle, ShouldClaim: shouldClaim}, wmLogger)
		if err != nil {
			return err
		}
		h := router.AddConsumerHandler("ingest-"+name, w.cfg.Topics.Events(), sub, w.handle)
		h.AddMiddleware(append([]message.HandlerMiddleware{w.trackHandling}, chain...)...)
	}
	return nil
}

// trackHandling records the uuids of the messages this process is handling,
// for shouldClaim.
func (w *Worker) trackHandling(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		w.handling.Store(msg.UUID, struct{}{})
		defer w.handling.Delete(msg.UUID)
		return h(msg)
	}
}

// entryUUID reads the message uuid of a work-stream entry ("" if it is gone).
func (w *Worker) entryUUID(id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	entries, err := w.deps.Redis.XRange(ctx, w.cfg.Topics.Events(), id, id).Result()
	if err != nil || len(entries) == 0 {
		return "", err
	}
	uuid, _ := entries[0].Values[queue.FieldUUID].(string)
	return uuid, nil
}

// consumerNames are this process's own (its slot) and stable across clean
// restarts, so a restarted worker finds what its previous run left pending.
func (w *Worker) consumerNames() []string {
	names := make([]string, w.cfg.Consumers)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d-%d", w.cfg.ConsumerName, w.slot, i)
	}
	return names
}

// handle processes one message: one attempt.
func (w *Worker) handle(msg *message.Message) error {
	start := time.Now()
	outcome, err := w.process(msg)
	w.deps.Metrics.ProcessingDuration.Observe(time.Since(start).Seconds())
	log := w.deps.Logger.With("message_uuid", msg.UUID, "correlation_id", observability.CorrelationID(msg.Context()))
	switch {
	case err == nil:
		w.deps.Metrics.EventsProcessed.WithLabelValues(outcomeStatus[outcome]).Inc()
		log.Debug("event processed", "outcome", string(outcome))
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
	if problem := msg.Metadata.Get(queue.MetaDecodeError); problem != "" {
		return "", fmt.Errorf("malformed message %s: %s", msg.UUID, problem)
	}
	e, err := ingest.Decode(msg.Payload)
	if err != nil {
		return "", fmt.Errorf("message %s: %w", msg.UUID, err)
	}
	// Once handed over, an attempt finishes even while the worker shuts down:
	// it is bounded by AttemptTimeout, not by the router's lifetime.
	return w.coalescer.process(msg.Context(), e)
}

var outcomeStatus = map[ingest.Outcome]string{
	ingest.OutcomeCompleted: string(ingest.StatusCompleted),
	ingest.OutcomeDuplicate: "DUPLICATE",
	ingest.OutcomeSkipped:   "SKIPPED",
}
