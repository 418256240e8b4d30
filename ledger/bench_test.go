package ledger_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/internal/testredis"
	"github.com/daybook/daybook/ledger"
)

const (
	benchAccounts = 1000
	// benchClients is how many transfers run at once (b.RunParallel's
	// goroutines), like pgbench -c 16.
	benchClients = 16
	// benchPoolConns leaves every client a connection.
	benchPoolConns = benchClients + 4
	// benchFunders open and fund the accounts in parallel.
	benchFunders = 10
)

// BenchmarkTransfer_Uniform: each transfer is between two random accounts
// of 1,000, in a transaction of its own.
func BenchmarkTransfer_Uniform(b *testing.B) { benchmarkTransfers(b, false) }

// BenchmarkTransfer_HotAccount: every transfer credits one account, so every
// transaction waits for that account's row lock.
func BenchmarkTransfer_HotAccount(b *testing.B) { benchmarkTransfers(b, true) }

func benchmarkTransfers(b *testing.B, hot bool) {
	for _, lock := range lockStrategies {
		b.Run(lock, func(b *testing.B) {
			svc := benchLedger(b, lock)
			accounts := benchFundedAccounts(b, svc)
			hotAccount := openAccount(b, svc, "hot", false).ID
			amount := mustAmount(b, "0.01")
			var busy atomic.Int64
			var mu sync.Mutex
			var latencies []time.Duration
			b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					from := accounts[rand.IntN(len(accounts))]
					to := hotAccount
					for !hot && (to == hotAccount || to == from) {
						to = accounts[rand.IntN(len(accounts))]
					}
					start := time.Now()
					_, _, err := transferAsClient(context.Background(), svc, ledger.TransferParams{
						From: from, To: to, Amount: amount, IdempotencyKey: newKey(),
					}, &busy)
					mine = append(mine, time.Since(start))
					if err != nil {
						b.Error(err)
						return
					}
				}
				mu.Lock()
				latencies = append(latencies, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
			slices.Sort(latencies)
			for _, q := range []struct {
				name string
				at   float64
			}{{"p50-ms", 0.50}, {"p95-ms", 0.95}, {"p99-ms", 0.99}} {
				b.ReportMetric(float64(latencies[int(q.at*float64(len(latencies)-1))])/float64(time.Millisecond), q.name)
			}
			b.ReportMetric(float64(busy.Load())/float64(b.N), "busy-retries/op")
		})
	}
}

func benchLedger(b *testing.B, lock string) *ledger.Service {
	b.Helper()
	_, schemaURL := testdb.NewWithURL(b)
	config, err := pgxpool.ParseConfig(schemaURL)
	require.NoError(b, err)
	config.MaxConns = benchPoolConns
	pool, err := pgxpool.NewWithConfig(b.Context(), config)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	cfg := ledger.Config{Lock: lock}
	if lock == ledger.LockRedis {
		cfg.Redis, cfg.KeyPrefix = testredis.New(b)
	}
	return newLedgerOn(b, pool, cfg)
}

// benchFundedAccounts opens benchAccounts accounts with 1,000,000.0000 each,
// funded from benchFunders world accounts in parallel.
func benchFundedAccounts(b *testing.B, svc *ledger.Service) []uuid.UUID {
	b.Helper()
	accounts := make([]uuid.UUID, benchAccounts)
	errs := make([]error, benchFunders)
	amount := mustAmount(b, "1000000")
	var wg sync.WaitGroup
	for f := range benchFunders {
		wg.Go(func() {
			ctx := b.Context()
			world, err := svc.CreateAccount(ctx, ledger.CreateAccountParams{Name: "world", AllowNegative: true})
			if err != nil {
				errs[f] = err
				return
			}
			for i := f; i < benchAccounts; i += benchFunders {
				a, err := svc.CreateAccount(ctx, ledger.CreateAccountParams{Name: "bench"})
				if err != nil {
					errs[f] = err
					return
				}
				var busy atomic.Int64
				_, _, err = transferAsClient(ctx, svc, ledger.TransferParams{From: world.ID, To: a.ID, Amount: amount, IdempotencyKey: newKey()}, &busy)
				if err != nil {
					errs[f] = err
					return
				}
				accounts[i] = a.ID
			}
		})
	}
	wg.Wait()
	require.NoError(b, errors.Join(errs...))
	return accounts
}
