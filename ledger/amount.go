package ledger

import (
	"fmt"
	"regexp"

	"github.com/shopspring/decimal"
)

// AmountPlaces is how many decimal places an amount may have: numeric(20,4).
const AmountPlaces = 4

// amountTextMax bounds the text ParseAmount looks at: 16 integer digits, a
// point and 4 places.
const amountTextMax = 16 + 1 + AmountPlaces

// AmountMaxText is the largest amount, and the largest balance magnitude,
// that numeric(20,4) holds: 10^16 - 0.0001.
const AmountMaxText = "9999999999999999.9999"

var amountMax = decimal.RequireFromString(AmountMaxText)

// amountPattern is a plain decimal: digits without a sign, exponent, blank or
// leading zero (other than "0" itself), and optionally a point followed by 1
// to 4 digits. ".5" and "1." are refused: a client that writes them has a
// bug worth hearing about, and a canonical form keeps request hashes honest.
var amountPattern = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.[0-9]{1,4})?$`)

// ParseAmount parses a decimal string into an amount: a plain decimal with
// at most 4 places, greater than zero and at most AmountMaxText. "100.50" and
// "0.0001" parse; "0", "-1", "+1", "1.23456", "1e3", " 1", "", ".5", "1.",
// "007" and "10000000000000000" are ErrInvalidAmount.
func ParseAmount(s string) (decimal.Decimal, error) {
	if len(s) > amountTextMax || !amountPattern.MatchString(s) {
		return decimal.Decimal{}, fmt.Errorf("amount %.30q must be a plain decimal with at most %d places: %w", s, AmountPlaces, ErrInvalidAmount)
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("amount %q: %w", s, ErrInvalidAmount)
	}
	if err := checkAmount(d); err != nil {
		return decimal.Decimal{}, err
	}
	return d, nil
}

// checkAmount holds what every amount must be, however it was made.
func checkAmount(d decimal.Decimal) error {
	switch {
	case !d.IsPositive():
		return fmt.Errorf("amount %s must be greater than 0: %w", d, ErrInvalidAmount)
	case d.GreaterThan(amountMax):
		return fmt.Errorf("amount %s must be at most %s: %w", d, AmountMaxText, ErrInvalidAmount)
	case !d.Equal(d.Truncate(AmountPlaces)):
		return fmt.Errorf("amount %s has more than %d decimal places: %w", d, AmountPlaces, ErrInvalidAmount)
	}
	return nil
}

// formatAmount is the canonical text of an amount: always 4 places, as
// numeric(20,4) prints it.
func formatAmount(d decimal.Decimal) string {
	return d.StringFixed(AmountPlaces)
}
