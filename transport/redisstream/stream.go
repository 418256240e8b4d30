package redisstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmredisstream "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/daybook/daybook/transport"
)

// Message fields on a Redis stream entry. The gate's Lua script writes the
// same three fields, so messages from either producer decode alike.
const (
	FieldUUID     = "uuid"
	FieldPayload  = "payload"
	FieldMetadata = "metadata"
)

// Marshaller writes and reads the three-field layout.
type Marshaller struct{}

var _ wmredisstream.MarshallerUnmarshaller = Marshaller{}

// Marshal encodes msg as uuid, payload and JSON metadata.
func (Marshaller) Marshal(_ string, msg *message.Message) (map[string]any, error) {
	md, err := json.Marshal(msg.Metadata)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return map[string]any{FieldUUID: msg.UUID, FieldPayload: []byte(msg.Payload), FieldMetadata: string(md)}, nil
}

// Unmarshal never fails: one malformed entry must not halt the queue (the
// subscriber hands it on), so it becomes a message flagged with
// transport.MetaDecodeError, which the handler fails into the DLQ.
func (Marshaller) Unmarshal(values map[string]any) (*message.Message, error) {
	id, _ := values[FieldUUID].(string)
	problem := ""
	if id == "" {
		id = watermill.NewUUID()
		problem = "stream entry has no uuid field"
	}
	payload, _ := values[FieldPayload].(string)
	msg := message.NewMessage(id, []byte(payload))
	if raw, ok := values[FieldMetadata].(string); ok && raw != "" {
		md := map[string]string{}
		if err := json.Unmarshal([]byte(raw), &md); err != nil {
			problem = "stream entry metadata is not a JSON object of strings"
		} else {
			for k, v := range md {
				msg.Metadata.Set(k, v)
			}
		}
	}
	if _, ok := values[FieldPayload]; !ok {
		problem = "stream entry has no payload field"
	}
	if problem != "" {
		msg.Metadata.Set(transport.MetaDecodeError, problem)
	}
	return msg, nil
}

// NewRedisPublisher publishes with the three-field layout. Streams listed in
// maxlens are trimmed (approximately) to that length; others are never trimmed.
func NewRedisPublisher(client redis.UniversalClient, maxlens map[string]int64, logger watermill.LoggerAdapter) (message.Publisher, error) {
	pub, err := wmredisstream.NewPublisher(wmredisstream.PublisherConfig{
		Client: client, Marshaller: Marshaller{}, Maxlens: maxlens,
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("redis publisher: %w", err)
	}
	return pub, nil
}

// PrefixedPublisher prepends a prefix to every topic, so relayed messages
// land in the streams of the deployment (or test) that owns them.
type PrefixedPublisher struct {
	Prefix string
	Pub    message.Publisher
}

// Publish implements message.Publisher.
func (p PrefixedPublisher) Publish(topic string, msgs ...*message.Message) error {
	return p.Pub.Publish(p.Prefix+topic, msgs...)
}

// Close implements message.Publisher.
func (p PrefixedPublisher) Close() error { return p.Pub.Close() }

// pendingScanMax bounds how many pending messages one consumer hands back at start.
const pendingScanMax = 10_000

// HandBackPending marks every message still pending on the named consumers
// (left by a previous run of this process, which used the same stable names)
// as idle for idle, so the claim pass that runs when the consumers subscribe
// picks them up at once instead of after ClaimIdle. It returns how many.
func HandBackPending(ctx context.Context, client redis.UniversalClient, stream string, consumers []string, idle time.Duration) (int, error) {
	total := 0
	for _, consumer := range consumers {
		pending, err := client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: stream, Group: transport.WorkGroup, Start: "-", End: "+", Count: pendingScanMax, Consumer: consumer,
		}).Result()
		if err != nil {
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				return 0, nil // first start: nothing can be pending
			}
			return total, fmt.Errorf("pending of %s: %w", consumer, err)
		}
		if len(pending) == 0 {
			continue
		}
		args := []any{"XCLAIM", stream, transport.WorkGroup, consumer, 0}
		for _, p := range pending {
			args = append(args, p.ID)
		}
		args = append(args, "IDLE", idle.Milliseconds(), "JUSTID")
		if err := client.Do(ctx, args...).Err(); err != nil {
			return total, fmt.Errorf("hand back pending of %s: %w", consumer, err)
		}
		total += len(pending)
	}
	return total, nil
}

// Eventually subscribes through its subscriber, retrying every Interval until it
// succeeds, so that a consumer whose broker is down when the router starts
// comes up once the broker does instead of stopping the router (the event-log
// projector on Redis in SQS mode, where Redis may be down). Messages are
// forwarded as they are: acks and nacks reach the subscriber's messages directly.
type Eventually struct {
	sub      message.Subscriber
	interval time.Duration
	onError  func(error) // told each failed attempt; optional

	closeOnce sync.Once
	closing   chan struct{}
	wg        sync.WaitGroup
}

// NewEventually wraps sub, retrying every interval; onError (optional) is told each failed attempt.
func NewEventually(sub message.Subscriber, interval time.Duration, onError func(error)) *Eventually {
	return &Eventually{sub: sub, interval: interval, onError: onError, closing: make(chan struct{})}
}

// Subscribe implements message.Subscriber; it never fails itself.
func (e *Eventually) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(out)
		var in <-chan *message.Message
		for in == nil {
			ch, err := e.sub.Subscribe(ctx, topic)
			if err == nil {
				in = ch
				break
			}
			if e.onError != nil {
				e.onError(err)
			}
			select {
			case <-ctx.Done():
				return
			case <-e.closing:
				return
			case <-time.After(e.interval):
			}
		}
		for msg := range in {
			select {
			case out <- msg:
			case <-e.closing:
				return // unacknowledged: the broker delivers it again
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Close closes the subscriber and waits for the forwarding to end.
func (e *Eventually) Close() error {
	e.closeOnce.Do(func() { close(e.closing) })
	err := e.sub.Close()
	e.wg.Wait()
	return err
}

// EnsureGroup creates group on stream (from its first entry, creating the
// stream if need be) unless it exists, and reports whether it had to. The
// subscribers create their group only when they subscribe: if Redis loses
// its data (a restart without persistence, FLUSHALL, a failover to a replica
// without the group), every read fails with NOGROUP until it is recreated.
func EnsureGroup(ctx context.Context, client redis.UniversalClient, stream, group string) (bool, error) {
	err := client.XGroupCreateMkStream(ctx, stream, group, "0").Err()
	if err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create group %s on %s: %w", group, stream, err)
	}
	return true, nil
}

// PipelinedPublisher appends the messages of one Publish call to the stream
// in one round trip (a pipeline of XADDs, in order), where watermill's
// publisher makes one round trip per message. The outbox relay publishes a
// batch per call. Streams listed in maxlens are trimmed approximately to that
// length. It does not own its client.
type PipelinedPublisher struct {
	client  redis.UniversalClient
	maxlens map[string]int64
}

// NewPipelinedPublisher publishes on client with the three-field layout.
func NewPipelinedPublisher(client redis.UniversalClient, maxlens map[string]int64) *PipelinedPublisher {
	return &PipelinedPublisher{client: client, maxlens: maxlens}
}

// pipelineTimeout bounds one Publish call.
const pipelineTimeout = 10 * time.Second

// Publish implements message.Publisher: all of msgs are appended, or an error
// says that some may not be (publishing is at least once).
func (p *PipelinedPublisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(msgs[0].Context()), pipelineTimeout)
	defer cancel()
	pipe := p.client.Pipeline()
	for _, msg := range msgs {
		values, err := Marshaller{}.Marshal(topic, msg)
		if err != nil {
			return fmt.Errorf("message %s: %w", msg.UUID, err)
		}
		args := &redis.XAddArgs{Stream: topic, Values: values}
		if maxlen := p.maxlens[topic]; maxlen > 0 {
			args.MaxLen, args.Approx = maxlen, true
		}
		pipe.XAdd(ctx, args)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("append %d messages to %s: %w", len(msgs), topic, err)
	}
	return nil
}

// Close implements message.Publisher; the client belongs to the caller.
func (p *PipelinedPublisher) Close() error { return nil }
