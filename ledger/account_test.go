package ledger_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/eventstore"
	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/ledger"
	"github.com/daybook/daybook/logevent"
)

func TestCreateAccount_OpensEmptyUSDAccountWithItsEvent(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	ctx := t.Context()

	created, err := svc.CreateAccount(ctx, ledger.CreateAccountParams{Name: "Alice"})
	require.NoError(t, err)
	require.Equal(t, "Alice", created.Name)
	require.Equal(t, "USD", created.Currency)
	require.False(t, created.AllowNegative)
	require.Equal(t, "0.0000", created.Balance.StringFixed(4))
	require.EqualValues(t, 1, created.Version)
	require.False(t, created.CreatedAt.IsZero())

	got, err := svc.GetAccount(ctx, created.ID)
	require.NoError(t, err)
	require.Equal(t, created.ID, got.ID)
	require.Equal(t, "Alice", got.Name)
	require.Equal(t, "USD", got.Currency)
	require.Equal(t, "0.0000", got.Balance.StringFixed(4))
	require.EqualValues(t, 1, got.Version)
	require.True(t, created.CreatedAt.Equal(got.CreatedAt))

	events, err := eventstore.ReadStream(ctx, pool, logevent.AccountStream(created.ID))
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, logevent.TypeAccountOpened, events[0].Type)
	require.EqualValues(t, 1, events[0].Version)
	require.JSONEq(t, `{"account_id":"`+created.ID.String()+`","name":"Alice","currency":"USD","allow_negative":false}`, string(events[0].Data))
	require.Equal(t, 1, countRows(t, pool, "outbox"))
}

func TestCreateAccount_KeepsCurrencyAndAllowNegative(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)

	created, err := svc.CreateAccount(t.Context(), ledger.CreateAccountParams{Name: "world", Currency: "EUR", AllowNegative: true})
	require.NoError(t, err)
	got, err := svc.GetAccount(t.Context(), created.ID)
	require.NoError(t, err)
	require.Equal(t, "EUR", got.Currency)
	require.True(t, got.AllowNegative)
}

func TestCreateAccount_RefusesInvalidNameOrCurrencyAndWritesNothing(t *testing.T) {
	t.Parallel()
	svc, pool := newLedger(t, ledger.LockPostgres)
	long := make([]rune, 201)
	for i := range long {
		long[i] = 'é'
	}
	tests := []struct {
		name   string
		params ledger.CreateAccountParams
	}{
		{name: "empty name", params: ledger.CreateAccountParams{Name: ""}},
		{name: "blank name", params: ledger.CreateAccountParams{Name: "  \t"}},
		{name: "201 characters", params: ledger.CreateAccountParams{Name: string(long)}},
		{name: "invalid UTF-8", params: ledger.CreateAccountParams{Name: "a\xffb"}},
		{name: "NUL in the name", params: ledger.CreateAccountParams{Name: "a\x00b"}},
		{name: "lower-case currency", params: ledger.CreateAccountParams{Name: "a", Currency: "usd"}},
		{name: "four-letter currency", params: ledger.CreateAccountParams{Name: "a", Currency: "USDT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.CreateAccount(t.Context(), tt.params)
			require.ErrorIs(t, err, ledger.ErrInvalidInput)
		})
	}
	require.Zero(t, countRows(t, pool, "accounts"))
	require.Zero(t, countRows(t, pool, "event_log"))

	// 200 characters is the limit, counted in characters, not bytes.
	a, err := svc.CreateAccount(t.Context(), ledger.CreateAccountParams{Name: string(long[:200])})
	require.NoError(t, err)
	require.Equal(t, string(long[:200]), a.Name)
}

func TestGetAccount_UnknownIsNotFound(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)

	_, err := svc.GetAccount(t.Context(), uuid.New())
	require.ErrorIs(t, err, ledger.ErrAccountNotFound)
}

func TestNewService_RejectsBadConfig(t *testing.T) {
	t.Parallel()
	pool := testdb.New(t)

	_, err := ledger.NewService(pool, ledger.Config{Lock: "zookeeper"})
	require.ErrorContains(t, err, `lock strategy "zookeeper" is neither "postgres" nor "redis"`)
	_, err = ledger.NewService(pool, ledger.Config{Lock: ledger.LockRedis})
	require.ErrorContains(t, err, "lock strategy redis needs a Redis client")
	_, err = ledger.NewService(pool, ledger.Config{RetryMax: 21})
	require.ErrorContains(t, err, "retry max 21 must be between 0 and 20")
	_, err = ledger.NewService(pool, ledger.Config{LockWait: -1})
	require.ErrorContains(t, err, "durations must not be negative")
	_, err = ledger.NewService(nil, ledger.Config{})
	require.EqualError(t, err, "new ledger service: pool is nil")

	svc, err := ledger.NewService(pool, ledger.Config{})
	require.NoError(t, err)
	require.NotNil(t, svc)
}

func TestCreateAccount_RecordsTheAPIKeyThatOpenedIt(t *testing.T) {
	t.Parallel()
	svc, _ := newLedger(t, ledger.LockPostgres)

	created, err := svc.CreateAccount(t.Context(), ledger.CreateAccountParams{Name: "a", APIKeyID: "k3y"})
	require.NoError(t, err)
	got, err := svc.GetAccount(t.Context(), created.ID)
	require.NoError(t, err)
	require.Equal(t, "k3y", got.APIKeyID)

	anonymous := openAccount(t, svc, "b", false)
	got, err = svc.GetAccount(t.Context(), anonymous.ID)
	require.NoError(t, err)
	require.Empty(t, got.APIKeyID)
}
