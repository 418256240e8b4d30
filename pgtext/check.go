package pgtext

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Reasons a Problem gives, each a predicate of the field it names.
const (
	ReasonNUL       = `contains a NUL character (\u0000)`
	ReasonSurrogate = "contains an unpaired UTF-16 surrogate"
	ReasonUTF8      = "is not valid UTF-8"
	ReasonNumber    = "is a number outside the range of Postgres numeric"
	ReasonMalformed = "is not well-formed JSON"
)

// Problem is the first thing in a document that Postgres would refuse.
type Problem struct {
	// Path names the field: members joined with "." and array indices as
	// "[i]", e.g. "payload.items[3].name"; for a bad object key, the path of
	// that key's member. Keys are printed as decoded, with characters that
	// cannot be stored shown as U+FFFD. "" is the document itself.
	Path   string
	Reason string // one of the Reason constants
}

func (p *Problem) Error() string {
	if p.Path == "" {
		return "the document " + p.Reason
	}
	return p.Path + " " + p.Reason
}

// CheckString returns "" if Postgres can store s as text, else the reason
// (ReasonNUL or ReasonUTF8) for the first bad byte. A Go string holds no
// surrogates: UTF-8 that encodes one is invalid.
func CheckString(s string) string {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return ReasonNUL
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return ReasonUTF8
		}
		i += size
	}
	return ""
}

// CheckJSON returns nil if Postgres can store doc as jsonb: every string,
// object keys included, at any depth, and every number. Otherwise it returns
// the first problem in document order; a document that is not JSON at all is
// a Problem at path "".
//
// It reads the raw bytes rather than tokens from encoding/json, whose decoder
// has already replaced what needs finding, allocates each string, and cannot
// say where a token starts. Once json.Valid has vouched for the syntax, one
// pass that tracks brackets, commas and colons is enough, and it allocates
// nothing until it finds a problem.
func CheckJSON(doc []byte) *Problem {
	if !json.Valid(doc) {
		return &Problem{Reason: ReasonMalformed}
	}
	// Nesting is at most 10000 deep (json.Valid refuses more); most documents
	// fit in the array and need no allocation.
	var frames [16]frame
	stack := frames[:0]
	for i := 0; i < len(doc); {
		switch doc[i] {
		case '{':
			stack = append(stack, frame{wantKey: true})
			i++
		case '[':
			stack = append(stack, frame{array: true})
			i++
		case '}', ']':
			stack = stack[:len(stack)-1]
			i++
		case ',':
			top := &stack[len(stack)-1]
			if top.array {
				top.index++
			} else {
				top.wantKey = true
			}
			i++
		case ':':
			stack[len(stack)-1].wantKey = false
			i++
		case '"':
			end, reason := scanString(doc, i)
			if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].wantKey {
				stack[n-1].keyStart, stack[n-1].keyEnd = i, end
			}
			if reason != "" {
				return &Problem{Path: path(doc, stack), Reason: reason}
			}
			i = end
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			end := i + 1
			for end < len(doc) && isNumberByte(doc[end]) {
				end++
			}
			if !numberFits(doc[i:end]) {
				return &Problem{Path: path(doc, stack), Reason: ReasonNumber}
			}
			i = end
		default: // white space and the letters of true, false and null
			i++
		}
	}
	return nil
}

// frame is one open object or array on the way down to the current value.
type frame struct {
	array            bool
	index            int  // array: the current element
	wantKey          bool // object: the next string is a key
	keyStart, keyEnd int  // object: the current member's key, quotes included
}

// scanString checks the string whose opening quote is at doc[start] and
// returns the index just past its closing quote, with the reason for its
// first problem or "". doc must be valid JSON.
func scanString(doc []byte, start int) (end int, reason string) {
	fail := func(r string) {
		if reason == "" {
			reason = r
		}
	}
	for i := start + 1; ; {
		c := doc[i]
		switch {
		case c == '"':
			return i + 1, reason
		case c == '\\' && doc[i+1] == 'u':
			u := hex4(doc[i+2 : i+6])
			i += 6
			switch {
			case u == 0:
				fail(ReasonNUL)
			case u >= 0xD800 && u < 0xDC00: // high: a low one must follow at once
				if doc[i] == '\\' && doc[i+1] == 'u' && isLowSurrogate(hex4(doc[i+2:i+6])) {
					i += 6
				} else {
					fail(ReasonSurrogate)
				}
			case isLowSurrogate(u):
				fail(ReasonSurrogate)
			}
		case c == '\\':
			i += 2
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(doc[i:])
			if r == utf8.RuneError && size == 1 {
				fail(ReasonUTF8)
			}
			i += size
		}
	}
}

func isLowSurrogate(u rune) bool { return u >= 0xDC00 && u < 0xE000 }

// hex4 decodes the 4 hex digits of a \u escape; json.Valid has checked them.
func hex4(b []byte) rune {
	var u rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			u = u<<4 | rune(c-'0')
		case c >= 'a':
			u = u<<4 | rune(c-'a'+10)
		default:
			u = u<<4 | rune(c-'A'+10)
		}
	}
	return u
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// Limits of Postgres numeric (checked on Postgres 15), which refuses with
// "value overflows numeric format" a number whose display scale (digits
// after the point as written, less the exponent) exceeds numericScaleMax,
// whose leading digit lies more than numericMagnitudeMax places left of the
// point, or whose exponent reaches numericExponentMax either way, even on zero.
const (
	numericScaleMax     = 16383
	numericMagnitudeMax = 131071
	numericExponentMax  = 1<<30 - 1 // INT_MAX / 2
)

// numberFits says whether Postgres numeric holds the JSON number num.
func numberFits(num []byte) bool {
	// Without an exponent, only a number longer than the smallest limit can fail.
	if len(num) <= numericScaleMax && !hasExponent(num) {
		return true
	}
	i := 0
	if num[i] == '-' {
		i++
	}
	intStart := i
	for i < len(num) && isDigit(num[i]) {
		i++
	}
	integer := num[intStart:i]
	var fraction []byte
	if i < len(num) && num[i] == '.' {
		i++
		start := i
		for i < len(num) && isDigit(num[i]) {
			i++
		}
		fraction = num[start:i]
	}
	var exp int64
	if i < len(num) { // e or E
		i++
		negative := num[i] == '-'
		if num[i] == '-' || num[i] == '+' {
			i++
		}
		for ; i < len(num); i++ {
			if exp < numericExponentMax { // saturate: more digits only grow it
				exp = exp*10 + int64(num[i]-'0')
			}
		}
		if negative {
			exp = -exp
		}
	}
	if exp >= numericExponentMax || exp <= -numericExponentMax {
		return false
	}
	if int64(len(fraction))-exp > numericScaleMax {
		return false
	}
	// The place of the leading significant digit: JSON writes no leading
	// zeros, so a nonzero integer part starts with it.
	var lead int64
	switch {
	case len(integer) > 1 || integer[0] != '0':
		lead = int64(len(integer)) - 1
	default:
		j := 0
		for j < len(fraction) && fraction[j] == '0' {
			j++
		}
		if j == len(fraction) {
			return true // zero has no magnitude
		}
		lead = -int64(j) - 1
	}
	return lead+exp <= numericMagnitudeMax
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func hasExponent(num []byte) bool {
	for _, c := range num {
		if c == 'e' || c == 'E' {
			return true
		}
	}
	return false
}

// path names the value that stack leads to. It runs once, on failure.
func path(doc []byte, stack []frame) string {
	var b strings.Builder
	for i, f := range stack {
		if f.array {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(f.index))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(keyText(doc[f.keyStart:f.keyEnd]))
	}
	return b.String()
}

// keyText decodes a quoted key for printing. encoding/json turns invalid
// UTF-8 and lone surrogates into U+FFFD; NUL gets the same treatment so that
// the path itself can be stored and logged.
func keyText(quoted []byte) string {
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return string(quoted) // cannot happen: json.Valid checked it
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}
