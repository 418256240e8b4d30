// Package testredis gives each test its own Redis key space on the local
// Redis: a random prefix for every key and stream, deleted at cleanup. For
// tests only.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/internal/testproxy"
)

// EnvURL overrides the Redis the tests use.
const EnvURL = "DAYBOOK_TEST_REDIS_URL"

// Options returns the client options of the test Redis.
func Options(t testing.TB) *redis.Options {
	t.Helper()
	url := os.Getenv(EnvURL)
	if url == "" {
		url = "redis://localhost:6379/0"
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvURL, err)
	}
	return opts
}

// New returns a client and a fresh key prefix ("t<hex>:"); every key under
// the prefix is deleted when the test ends.
func New(t testing.TB) (*redis.Client, string) {
	t.Helper()
	client := redis.NewClient(Options(t))
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "t" + hex.EncodeToString(b) + ":"
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis: %v (is it running? scripts/services.sh starts it)", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
		client.Close()
	})
	return client, prefix
}

// Proxied returns a client of the test Redis reached through a TCP proxy the
// test can cut (Redis unreachable) and restore. The client fails fast: no
// retries, short timeouts. It is closed when the test ends.
func Proxied(t testing.TB) (*redis.Client, *testproxy.Proxy) {
	t.Helper()
	opts := Options(t)
	proxy := testproxy.New(t, opts.Addr)
	opts.Addr, opts.MaxRetries = proxy.Addr(), -1
	opts.DialTimeout, opts.ReadTimeout = 300*time.Millisecond, 300*time.Millisecond
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	return client, proxy
}
