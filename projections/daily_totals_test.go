package projections_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/projections"
)

func transferEvent(t *testing.T, from, to uuid.UUID, amount string, at time.Time) projections.LogEvent {
	t.Helper()
	data, err := json.Marshal(map[string]string{"from_account_id": from.String(), "to_account_id": to.String(), "amount": amount})
	require.NoError(t, err)
	return projections.LogEvent{EventID: uuid.Must(uuid.NewV7()), Position: 7, Type: "ledger.transfer_completed", Data: data, RecordedAt: at}
}

func TestApplyDailyTotals_SumsTransfersPerAccountAndUTCDayOnce(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	alice, bob := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	day := time.Date(2026, 11, 28, 23, 30, 0, 0, time.FixedZone("X", -2*3600)) // 01:30 UTC on the 29th
	in := transferEvent(t, bob, alice, "5.5000", day)
	for _, e := range []projections.LogEvent{in, in, transferEvent(t, alice, bob, "1.2500", day)} {
		_, err := projections.ApplyDailyTotals(t.Context(), pool, e)
		require.NoError(t, err)
	}
	utc29 := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	got, ok, err := projections.GetDailyTotal(t.Context(), pool, alice, utc29)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1.2500", got.Debited.StringFixed(4))
	require.Equal(t, "5.5000", got.Credited.StringFixed(4), "the repeated event counted once")
	require.Equal(t, int64(2), got.Postings)
	other, _, err := projections.GetDailyTotal(t.Context(), pool, bob, utc29)
	require.NoError(t, err)
	require.Equal(t, "5.5000", other.Debited.StringFixed(4))
	require.Equal(t, "1.2500", other.Credited.StringFixed(4))
}

func TestApplyDailyTotals_IgnoresOtherEventsAndRefusesMalformedPostings(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	acct := uuid.Must(uuid.NewV7())
	applied, err := projections.ApplyDailyTotals(t.Context(), pool, projections.LogEvent{EventID: uuid.Must(uuid.NewV7()), Type: "ingest.event_processed", Data: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, applied)
	other := uuid.Must(uuid.NewV7())
	for _, bad := range []projections.LogEvent{
		transferEvent(t, acct, other, "-1.0000", time.Now()),
		transferEvent(t, acct, other, "abc", time.Now()),
		transferEvent(t, uuid.Nil, other, "1", time.Now()),
		transferEvent(t, acct, acct, "1", time.Now()),
		{EventID: uuid.Must(uuid.NewV7()), Type: "ledger.transfer_completed", Data: []byte(`{`)},
	} {
		_, err := projections.ApplyDailyTotals(t.Context(), pool, bad)
		require.Error(t, err)
	}
}
