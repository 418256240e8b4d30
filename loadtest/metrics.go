package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The one series the drain phase reads: events the worker has taken to COMPLETED.
const (
	processedMetric      = "daybook_events_processed_total"
	processedStatusLabel = "status"
	processedCompleted   = "COMPLETED"
)

const metricsLineMax = 1 << 20 // bytes; a longer line in /metrics is an error, not a hang

// sumSeries reads Prometheus text exposition format from r and returns the sum of the values of
// every sample of metric name that carries label=value (other labels may vary: one counter can
// be split by, say, source). found is false when no sample matched, which for a counter that has
// not been touched yet means zero.
//
// Only lines of metric name are parsed; the rest of the page is skipped unread, so a line this
// tiny parser does not understand elsewhere on the page cannot fail the run.
func sumSeries(r io.Reader, name, label, value string) (sum float64, found bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), metricsLineMax)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ' && rest[0] != '\t') {
			continue // a comment, another metric, or a longer name sharing the prefix
		}
		labels, v, err := parseSample(rest)
		if err != nil {
			return 0, false, fmt.Errorf("metrics line %d %q: %w", lineNo, line, err)
		}
		if labels[label] == value {
			sum += v
			found = true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, false, fmt.Errorf("read metrics: %w", err)
	}
	return sum, found, nil
}

// parseSample parses what follows the metric name on a sample line:
// an optional {label="value",...} set, the value, and an optional timestamp (ignored).
func parseSample(s string) (map[string]string, float64, error) {
	labels := map[string]string{}
	if strings.HasPrefix(s, "{") {
		var err error
		labels, s, err = parseLabels(s[1:])
		if err != nil {
			return nil, 0, err
		}
	}
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, 0, errors.New("no value")
	}
	// fields[1], if present, is a timestamp; anything after "#" is an OpenMetrics exemplar.
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return nil, 0, fmt.Errorf("value: %w", err)
	}
	return labels, v, nil
}

// parseLabels parses `name="value", ...}` (the opening brace already consumed) and returns the
// labels and the text after the closing brace. Values may hold any character, with \\, \" and
// \n escaped, so a value like "a,b}" does not end the set.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, "", errors.New("unterminated label set")
		}
		if s[0] == '}' {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, "", errors.New("label without '='")
		}
		name := strings.TrimSpace(s[:eq])
		if !validLabelName(name) {
			return nil, "", fmt.Errorf("bad label name %q", name)
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		if s == "" || s[0] != '"' {
			return nil, "", fmt.Errorf("label %s: value not quoted", name)
		}
		val, rest, err := parseQuoted(s[1:])
		if err != nil {
			return nil, "", fmt.Errorf("label %s: %w", name, err)
		}
		labels[name] = val
		s = strings.TrimLeft(rest, " \t")
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
		default:
			return nil, "", fmt.Errorf("label %s: expected ',' or '}'", name)
		}
	}
}

// parseQuoted reads a label value up to its closing quote (the opening one already consumed).
func parseQuoted(s string) (string, string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 == len(s) {
				return "", "", errors.New("unterminated escape")
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case '\\', '"':
				b.WriteByte(s[i])
			default: // unknown escapes are kept verbatim, as Prometheus does
				b.WriteByte('\\')
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted value")
}

func validLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}
