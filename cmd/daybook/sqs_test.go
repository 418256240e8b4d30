package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testmoto"
)

// redisServer is a redis-server process of the test's own, so that the test
// can kill it without disturbing anything else.
type redisServer struct {
	url  string
	cmd  *exec.Cmd
	done chan error
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start(), "redis-server must be installed (it is on the CI machines)")
	r := &redisServer{url: fmt.Sprintf("redis://127.0.0.1:%d/0", port), cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(r.kill)
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	return r
}

// kill stops the server at once, as a crash would.
func (r *redisServer) kill() {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Kill()
		<-r.done //nolint:errcheck // killed on purpose
	}
}

// sqsEnv runs an instance on SQS queues of the test's own, with Redis at redisURL.
func sqsEnv(t *testing.T, redisURL string) []string {
	queues := testmoto.Config(t, 0)
	return []string{
		"REDIS_URL=" + redisURL, "DAYBOOK_QUEUE=sqs",
		"DAYBOOK_SQS_QUEUE=" + queues.Queue, "DAYBOOK_SQS_DLQ=" + queues.DeadQueue, "DAYBOOK_SQS_CREATE_QUEUES=true",
		"DAYBOOK_SQS_CONSUMERS=8",
		"AWS_ENDPOINT_URL=" + testmoto.Endpoint(), "AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
	}
}

// In SQS mode the whole system starts, ingests and processes without Redis.
func TestRunSQS_StartsAndProcessesWithRedisDownFromTheStart(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	nobody := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	in := newInstance(t, sqsEnv(t, "redis://"+nobody+"/0")...)
	in.start()

	code, _ := in.ingest(`{"event_id":"k-1","source":"shop","type":"t","payload":{}}`)
	require.Equal(t, http.StatusAccepted, code)
	code, _ = in.ingest(`{"event_id":"k-1","source":"shop","type":"t","payload":{}}`)
	require.Contains(t, []int{http.StatusAccepted, http.StatusOK}, code, "a 202 before the first copy is stored, 200 after")
	require.Eventually(t, func() bool {
		return in.count(`SELECT count(*) FROM ingestion_events WHERE idempotency_key = 'k-1' AND status = 'COMPLETED'`) == 1
	}, 60*time.Second, 100*time.Millisecond, "log:\n%s", in.log)
	require.Equal(t, 1, in.count(`SELECT count(*) FROM ingestion_events`))
	require.Equal(t, 1, in.count(`SELECT count(*) FROM event_log WHERE stream_id LIKE 'ingest-%'`))

	// The operator's view covers SQS's DLQ too.
	list := exec.Command(binary, "dlq", "list")
	list.Env = in.env
	out, err := list.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "0 dead letter(s)")
	require.Regexp(t, `0 message\(s\) in SQS queue daybook-test-[a-z0-9]+-dlq, moved here by the worker`, string(out))
	in.sigterm()
}

// With SQS as the queue, Redis is only the fast path: killed mid-run, the
// API keeps accepting (no 5xx), answers duplicates of stored events from
// Postgres, and every accepted key is stored and processed exactly once.
func TestRunSQS_RedisKilledMidRunIngestionFailsOpenAndNothingIsDoubled(t *testing.T) {
	t.Parallel()
	redis := startRedisServer(t)
	in := newInstance(t, sqsEnv(t, redis.url)...)
	in.start()

	body := func(key string) string {
		return `{"event_id":"` + key + `","source":"order_updates","type":"order.updated","order_id":"o-` + key + `","payload":{"status":"paid"}}`
	}
	for i := range 10 {
		code, _ := in.ingest(body(fmt.Sprint("before-", i)))
		require.Equal(t, http.StatusAccepted, code)
	}
	code, dup := in.ingest(body("before-0"))
	require.Equal(t, http.StatusOK, code)
	require.True(t, dup.Duplicate)
	require.Eventually(t, func() bool {
		return in.count(`SELECT count(*) FROM ingestion_events WHERE status = 'COMPLETED'`) == 10
	}, 60*time.Second, 100*time.Millisecond, "log:\n%s", in.log)

	// A client keeps sending while Redis dies; half its events repeat a key.
	var (
		mu       sync.Mutex
		answers  = map[int]int{}
		accepted = map[string]bool{}
		stop     = make(chan struct{})
		sender   sync.WaitGroup
	)
	sender.Add(1)
	go func() {
		defer sender.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			key := fmt.Sprint("during-", i/2) // each key sent twice in a row
			code, _ := in.ingest(body(key))
			mu.Lock()
			answers[code]++
			if code == http.StatusAccepted {
				accepted[key] = true
			}
			mu.Unlock()
		}
	}()
	time.Sleep(500 * time.Millisecond)
	redis.kill()
	time.Sleep(2 * time.Second)
	close(stop)
	sender.Wait()

	// Duplicates of stored events are still answered as such, from Postgres.
	code, dup = in.ingest(body("before-3"))
	require.Equal(t, http.StatusOK, code)
	require.True(t, dup.Duplicate)
	code, _ = in.ingest(body("after-0"))
	require.Equal(t, http.StatusAccepted, code)
	accepted["after-0"] = true

	mu.Lock()
	defer mu.Unlock()
	for status := range answers {
		require.Contains(t, []int{http.StatusAccepted, http.StatusOK}, status, "answers: %v", answers)
	}
	require.Greater(t, answers[http.StatusAccepted], 10, "answers: %v", answers)

	keys := make([]string, 0, len(accepted))
	for key := range accepted {
		keys = append(keys, key)
	}
	require.Eventually(t, func() bool {
		return in.count(`SELECT count(*) FROM ingestion_events WHERE idempotency_key = ANY($1) AND status = 'COMPLETED'`, keys) == len(keys)
	}, 60*time.Second, 200*time.Millisecond, "every accepted key completes; log:\n%s", in.log)
	require.Equal(t, 10+len(keys), in.count(`SELECT count(*) FROM ingestion_events`), "one row per key")
	require.Equal(t, 10+len(keys), in.count(`SELECT count(*) FROM event_log WHERE stream_id LIKE 'ingest-%'`), "each processed once")
	require.Zero(t, in.count(`SELECT count(*) FROM ingestion_events WHERE status <> 'COMPLETED'`))

	resp, err := http.Get(in.url + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Regexp(t, `daybook_redis_fail_open_total\{check="ingest"\} [1-9]`, string(metrics))
	require.True(t, strings.Contains(in.log.String(), "redis unreachable"), "the fail-open is logged")

	resp, err = http.Get(in.url + "/ready")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "ready without Redis in SQS mode")
	in.sigterm()
}
