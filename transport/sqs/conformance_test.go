package sqs_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testmoto"
	"github.com/daybook/daybook/transport"
	"github.com/daybook/daybook/transport/sqs"
	"github.com/daybook/daybook/transport/transporttest"
)

// conformanceVisibility is the work queue's visibility timeout: the shortest
// SQS allows, so that a crashed consumer's message comes back quickly.
const conformanceVisibility = 3 * time.Second

func TestTransport_Conformance(t *testing.T) {
	t.Parallel()
	transporttest.Run(t, func(t *testing.T) transporttest.Fixture {
		q := testmoto.Open(t, conformanceVisibility)
		awsCfg := testmoto.AWSConfig(t)
		topics := transport.Topics{Prefix: "conformance:"}
		return transporttest.Fixture{
			Topics: topics,
			New: func(t *testing.T) transport.Work {
				t.Helper()
				tr, err := sqs.NewTransport(t.Context(), q, sqs.TransportConfig{Topics: topics, Consumers: 2})
				require.NoError(t, err)
				return tr
			},
			PublishMalformed: func(t *testing.T) {
				t.Helper()
				publishMalformed(t, awssqs.NewFromConfig(awsCfg), q.Queue())
			},
			// The visibility timeout, a receive in flight on the dead
			// process's abandoned long poll, and moto's pace.
			RedeliveryAfterCrash: 15 * time.Second,
		}
	})
}

// publishMalformed sends a message whose metadata attribute is not JSON and
// which has no uuid attribute, as a producer other than Daybook might.
func publishMalformed(t *testing.T, client *awssqs.Client, queue string) {
	t.Helper()
	url, err := client.GetQueueUrl(t.Context(), &awssqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	require.NoError(t, err)
	_, err = client.SendMessage(t.Context(), &awssqs.SendMessageInput{
		QueueUrl: url.QueueUrl, MessageBody: aws.String(`{"n":0}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"metadata": {DataType: aws.String("String"), StringValue: aws.String("not json")},
		},
	})
	require.NoError(t, err)
}
