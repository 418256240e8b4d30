package logevent_test

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/logevent"
)

func TestStreams_NameTheAggregateByItsID(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("01a22516-0000-7000-8000-000000000001")
	require.Equal(t, "account-01a22516-0000-7000-8000-000000000001", logevent.AccountStream(id))
	require.Equal(t, "transfer-01a22516-0000-7000-8000-000000000001", logevent.TransferStream(id))
}

// The wire names are the contract with every event already in a log: a
// renamed field would make old events unreadable by a rebuild.
func TestData_KeepsItsWireNames(t *testing.T) {
	t.Parallel()
	id := uuid.MustParse("01a22516-0000-7000-8000-000000000001")
	for data, want := range map[any]string{
		logevent.AccountOpened{AccountID: id, Name: "a", Currency: "USD"}: `{"account_id":"` + id.String() + `","name":"a","currency":"USD","allow_negative":false}`,
		logevent.AccountPosting{AccountID: id, TransferID: id, EntryID: id, Amount: "-1.0000", Balance: "0.0000", Currency: "USD"}: `{"account_id":"` + id.String() +
			`","transfer_id":"` + id.String() + `","entry_id":"` + id.String() + `","amount":"-1.0000","balance":"0.0000","currency":"USD"}`,
	} {
		got, err := json.Marshal(data)
		require.NoError(t, err)
		require.JSONEq(t, want, string(got))
	}
	got, err := json.Marshal(logevent.TransferCompleted{TransferID: id, FromAccountID: id, ToAccountID: id, Amount: "1.0000", Currency: "USD"})
	require.NoError(t, err)
	require.JSONEq(t, `{"transfer_id":"`+id.String()+`","from_account_id":"`+id.String()+`","to_account_id":"`+id.String()+`","amount":"1.0000","currency":"USD"}`, string(got))
	got, err = json.Marshal(logevent.EventProcessed{EventID: id, IdempotencyKey: "k", Source: "s", Type: "t", Payload: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.JSONEq(t, `{"event_id":"`+id.String()+`","idempotency_key":"k","source":"s","type":"t","payload":{},"received_at":"0001-01-01T00:00:00Z"}`, string(got))
}
