package ledger_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/daybook/daybook/ledger"
)

func TestParseAmount_AcceptsPlainDecimalsOfAtMostFourPlaces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string // StringFixed(4); empty means ErrInvalidAmount
	}{
		{in: "0.0001", want: "0.0001"},
		{in: "100.50", want: "100.5000"},
		{in: "100", want: "100.0000"},
		{in: "0.5", want: "0.5000"},
		{in: "9999999999999999.9999", want: "9999999999999999.9999"},
		{in: "0"},
		{in: "0.0000"},
		{in: "-1"},
		{in: "+1"},
		{in: "1.23456"},
		{in: "1e3"},
		{in: ""},
		{in: "abc"},
		{in: " 1"},
		{in: "1 "},
		{in: ".5"},
		{in: "1."},
		{in: "007"},
		{in: "1,5"},
		{in: "10000000000000000"},
		{in: "10000000000000000.0000"},
		{in: "99999999999999999999999999999999999999"},
		{in: "NaN"},
		{in: "Infinity"},
		{in: "0x10"},
		{in: "１"}, // a full-width digit
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ledger.ParseAmount(tt.in)
			if tt.want == "" {
				require.ErrorIs(t, err, ledger.ErrInvalidAmount)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got.StringFixed(4))
		})
	}
}
