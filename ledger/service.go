package ledger

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Lock strategies (Config.Lock).
const (
	// LockPostgres locks accounts only with SELECT ... FOR UPDATE inside the
	// transfer's transaction: a transfer over a busy account waits its turn.
	LockPostgres = "postgres"
	// LockRedis takes a Redis lock per account before the transaction and
	// answers ErrLockBusy when it cannot have it within LockWait. The row
	// locks still run inside the transaction (see the package comment).
	LockRedis = "redis"
)

// Defaults of Config.
const (
	DefaultRetryMax  = 5
	DefaultRetryBase = 100 * time.Millisecond
	DefaultLockWait  = 200 * time.Millisecond
	DefaultLockTTL   = 10 * time.Second
)

// retryMaxLimit bounds Config.RetryMax: beyond it a client waits for
// seconds on a transaction that keeps failing.
const retryMaxLimit = 20

// Config configures a Service. Zero values take the defaults above.
type Config struct {
	// Lock is LockPostgres (the default) or LockRedis.
	Lock string
	// Redis is required for LockRedis. A cluster client works: each lock is
	// one key, taken one at a time.
	Redis redis.UniversalClient
	// KeyPrefix is put before every Redis key (lock:account:<id>).
	KeyPrefix string
	// LockWait is how long Transfer tries for the Redis locks before
	// ErrLockBusy.
	LockWait time.Duration
	// LockTTL is how long a Redis lock lives if its holder never releases it.
	// It should exceed a transfer's worst case, retries included; when it
	// does not, the row locks still keep the ledger right.
	LockTTL time.Duration
	// RetryMax is how many times a transaction that failed with a deadlock
	// (40P01) or a serialization failure (40001) is tried again.
	RetryMax int
	// RetryBase is the first retry's delay; each further retry doubles it,
	// and every delay is jittered to between half and 1.5 times itself.
	RetryBase time.Duration
	// OnRetry, when set, is called before each retry with the reason:
	// RetryReasonDeadlock or RetryReasonSerialization. It feeds
	// daybook_ledger_tx_retries_total{reason}, and must be safe for
	// concurrent use.
	OnRetry func(reason string)
}

func (c Config) withDefaults() Config {
	if c.Lock == "" {
		c.Lock = LockPostgres
	}
	if c.LockWait == 0 {
		c.LockWait = DefaultLockWait
	}
	if c.LockTTL == 0 {
		c.LockTTL = DefaultLockTTL
	}
	if c.RetryMax == 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.RetryBase == 0 {
		c.RetryBase = DefaultRetryBase
	}
	return c
}

// Validate reports what is wrong with the configuration, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	switch c.Lock {
	case LockPostgres:
	case LockRedis:
		if c.Redis == nil {
			errs = append(errs, errors.New("lock strategy redis needs a Redis client"))
		}
	default:
		errs = append(errs, fmt.Errorf("lock strategy %q is neither %q nor %q", c.Lock, LockPostgres, LockRedis))
	}
	if c.LockWait < 0 || c.LockTTL < 0 || c.RetryBase < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.RetryMax < 0 || c.RetryMax > retryMaxLimit {
		errs = append(errs, fmt.Errorf("retry max %d must be between 0 and %d", c.RetryMax, retryMaxLimit))
	}
	return errors.Join(errs...)
}

// Service is the ledger. It is safe for concurrent use.
type Service struct {
	pool  *pgxpool.Pool
	cfg   Config
	locks *accountLocks // nil unless cfg.Lock is LockRedis
}

// NewService returns the ledger on pool, whose schema must be migrated.
func NewService(pool *pgxpool.Pool, cfg Config) (*Service, error) {
	if pool == nil {
		return nil, errors.New("new ledger service: pool is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new ledger service: %w", err)
	}
	s := &Service{pool: pool, cfg: cfg}
	if cfg.Lock == LockRedis {
		s.locks = newAccountLocks(cfg.Redis, cfg.KeyPrefix, cfg.LockWait, cfg.LockTTL)
	}
	return s, nil
}
