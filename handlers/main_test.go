package handlers

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pgxpool's health-check goroutine and go-redis's pool reaper end
		// moments after Close; the pool closes are awaited in t.Cleanup.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		// redisstream's reader is not awaited by Subscriber.Close: after its
		// client closes it sleeps 500 ms on the read error, then returns.
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream.(*Subscriber).read"),
	)
}
