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

func posting(t *testing.T, typ string, account uuid.UUID, amount string, at time.Time) projections.LogEvent {
	t.Helper()
	data, err := json.Marshal(map[string]string{"account_id": account.String(), "amount": amount})
	require.NoError(t, err)
	return projections.LogEvent{EventID: uuid.Must(uuid.NewV7()), Position: 7, Type: typ, Data: data, RecordedAt: at}
}

func TestApplyDailyTotals_SumsPostingsPerUTCDayOnce(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	acct := uuid.Must(uuid.NewV7())
	day := time.Date(2026, 11, 28, 23, 30, 0, 0, time.FixedZone("X", -2*3600)) // 01:30 UTC on the 29th
	credit := posting(t, "ledger.account_credited", acct, "5.5000", day)
	for _, e := range []projections.LogEvent{credit, credit, posting(t, "ledger.account_debited", acct, "-1.2500", day)} {
		_, err := projections.ApplyDailyTotals(t.Context(), pool, e)
		require.NoError(t, err)
	}
	got, ok, err := projections.GetDailyTotal(t.Context(), pool, acct, time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1.2500", got.Debited.StringFixed(4))
	require.Equal(t, "5.5000", got.Credited.StringFixed(4), "the repeated event counted once")
	require.Equal(t, int64(2), got.Postings)
}

func TestApplyDailyTotals_IgnoresOtherEventsAndRefusesMalformedPostings(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)
	acct := uuid.Must(uuid.NewV7())
	applied, err := projections.ApplyDailyTotals(t.Context(), pool, projections.LogEvent{EventID: uuid.Must(uuid.NewV7()), Type: "ingest.event_processed", Data: []byte(`{}`)})
	require.NoError(t, err)
	require.False(t, applied)
	for _, bad := range []projections.LogEvent{
		posting(t, "ledger.account_debited", acct, "1.0000", time.Now()), // a debit must be negative
		posting(t, "ledger.account_credited", acct, "abc", time.Now()),
		posting(t, "ledger.account_credited", uuid.Nil, "1", time.Now()),
		{EventID: uuid.Must(uuid.NewV7()), Type: "ledger.account_credited", Data: []byte(`{`)},
	} {
		_, err := projections.ApplyDailyTotals(t.Context(), pool, bad)
		require.Error(t, err)
	}
}
