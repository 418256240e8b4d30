package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/daybook/daybook/logevent"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
)

// DailyTotals is the name of the asynchronous per-account daily totals projection.
const DailyTotals = "account_daily_totals"

// LogEvent is what the projection needs of one log event.
type LogEvent struct {
	EventID    uuid.UUID
	Position   int64
	Type       string
	Data       json.RawMessage
	RecordedAt time.Time
}

// DailyTotalsWants reports whether ApplyDailyTotals does anything with an
// event of this type, so that a consumer can pass the others by unread.
func DailyTotalsWants(eventType string) bool { return eventType == logevent.TypeTransferCompleted }

// ApplyDailyTotals folds one ledger.transfer_completed event into
// account_daily_totals — the amount debited from one account and credited
// to the other on the event's UTC day — exactly once: the event id is
// recorded in the same transaction, so a redelivered message changes
// nothing. Other events are ignored. applied reports whether totals changed.
func ApplyDailyTotals(ctx context.Context, pool *pgxpool.Pool, e LogEvent) (applied bool, err error) {
	if !DailyTotalsWants(e.Type) {
		return false, nil
	}
	var t logevent.TransferCompleted
	if err := json.Unmarshal(e.Data, &t); err != nil {
		return false, fmt.Errorf("daily totals: decode %s %s: %w", e.Type, e.EventID, err)
	}
	amount, err := decimal.NewFromString(t.Amount)
	if err != nil || t.FromAccountID == uuid.Nil || t.ToAccountID == uuid.Nil || t.FromAccountID == t.ToAccountID || !amount.IsPositive() {
		return false, fmt.Errorf("daily totals: %s %s: from %s to %s amount %q do not make a transfer", e.Type, e.EventID, t.FromAccountID, t.ToAccountID, t.Amount)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO projection_applied (projection, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, DailyTotals, e.EventID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // applied before: a redelivery
		}
		applied = true
		// Both rows in one statement, in account id order like every writer
		// of these rows, so two projectors cannot deadlock.
		if _, err := tx.Exec(ctx, `INSERT INTO account_daily_totals (account_id, day, debited, credited, postings)
			SELECT a, ($3::timestamptz AT TIME ZONE 'UTC')::date, d, c, 1
			FROM (VALUES ($1::uuid, $4::numeric, 0::numeric), ($2::uuid, 0::numeric, $4::numeric)) AS v(a, d, c)
			ORDER BY a
			ON CONFLICT (account_id, day) DO UPDATE SET debited = account_daily_totals.debited + EXCLUDED.debited,
				credited = account_daily_totals.credited + EXCLUDED.credited, postings = account_daily_totals.postings + 1`,
			t.FromAccountID, t.ToAccountID, e.RecordedAt, amount.String()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO projection_checkpoints (projection, position) VALUES ($1, $2)
			ON CONFLICT (projection) DO UPDATE SET position = greatest(projection_checkpoints.position, EXCLUDED.position), updated_at = now()`,
			DailyTotals, e.Position)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("daily totals: apply %s: %w", e.EventID, err)
	}
	return applied, nil
}

// DailyTotal is one row of the projection.
type DailyTotal struct {
	AccountID uuid.UUID
	Day       time.Time
	Debited   decimal.Decimal
	Credited  decimal.Decimal
	Postings  int64
}

// GetDailyTotal reads one account's totals of one UTC day.
func GetDailyTotal(ctx context.Context, pool *pgxpool.Pool, accountID uuid.UUID, day time.Time) (DailyTotal, bool, error) {
	t := DailyTotal{AccountID: accountID}
	var debited, credited string
	err := pool.QueryRow(ctx, `SELECT day, debited::text, credited::text, postings FROM account_daily_totals
		WHERE account_id = $1 AND day = $2::date`, accountID, day.UTC().Format(time.DateOnly)).Scan(&t.Day, &debited, &credited, &t.Postings)
	if errors.Is(err, pgx.ErrNoRows) {
		return DailyTotal{}, false, nil
	}
	if err != nil {
		return DailyTotal{}, false, fmt.Errorf("get daily total: %w", err)
	}
	t.Debited, t.Credited = decimal.RequireFromString(debited), decimal.RequireFromString(credited)
	return t, true, nil
}

// Checkpoint is the highest log position a projection has applied.
func Checkpoint(ctx context.Context, pool *pgxpool.Pool, projection string) (int64, error) {
	var pos int64
	err := pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM projection_checkpoints WHERE projection = $1`, projection).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("checkpoint of %s: %w", projection, err)
	}
	return pos, nil
}
