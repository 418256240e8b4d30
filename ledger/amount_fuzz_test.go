package ledger_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/internal/testdb"
	"github.com/daybook/daybook/ledger"
)

// FuzzParseAmount_AcceptsOnlyPlainDecimalsThatFitNumeric checks ParseAmount
// against its specification, written out by hand below: it accepts exactly
// the plain decimals (no sign, exponent, blank, leading zero, bare point,
// hex, NaN or Infinity) of at most 16 integer digits and 4 places that are
// greater than zero; what it accepts has the value written, prints back to
// an equal amount, and Postgres stores it in numeric(20,4) unchanged.
func FuzzParseAmount_AcceptsOnlyPlainDecimalsThatFitNumeric(f *testing.F) {
	pool := testdb.New(f)
	maxAmount, err := ledger.ParseAmount(ledger.AmountMaxText)
	require.NoError(f, err)

	f.Fuzz(func(t *testing.T, s string) {
		amount, err := ledger.ParseAmount(s)
		if !isPlainAmount(s) {
			require.ErrorIs(t, err, ledger.ErrInvalidAmount, "%q", s)
			return
		}
		require.NoError(t, err, "%q", s)
		require.True(t, amount.IsPositive())
		require.True(t, amount.LessThanOrEqual(maxAmount))
		require.True(t, amount.Equal(amount.Truncate(ledger.AmountPlaces)), "more than 4 places")

		fixed := amount.StringFixed(ledger.AmountPlaces)
		require.Equal(t, withFourPlaces(s), fixed, "the value is not the one written")
		again, err := ledger.ParseAmount(fixed)
		require.NoError(t, err)
		require.True(t, again.Equal(amount))

		var stored string
		require.NoError(t, pool.QueryRow(t.Context(), `SELECT $1::numeric(20,4)::text`, s).Scan(&stored))
		require.Equal(t, fixed, stored)
	})
}

// isPlainAmount is ParseAmount's contract: ASCII digits with no leading zero
// (but "0" itself), at most 16 of them, optionally a point and 1 to 4
// digits, and not zero.
func isPlainAmount(s string) bool {
	integer, fraction, hasPoint := strings.Cut(s, ".")
	switch {
	case integer == "" || len(integer) > 16 || !allDigits(integer):
		return false
	case len(integer) > 1 && integer[0] == '0':
		return false
	case hasPoint && (fraction == "" || len(fraction) > 4 || !allDigits(fraction)):
		return false
	}
	return strings.Trim(integer+fraction, "0") != ""
}

func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// withFourPlaces pads a plain decimal to 4 places: "12.5" is "12.5000".
func withFourPlaces(s string) string {
	integer, fraction, _ := strings.Cut(s, ".")
	return integer + "." + fraction + strings.Repeat("0", 4-len(fraction))
}
