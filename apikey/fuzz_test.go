package apikey

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func FuzzParseID(f *testing.F) {
	_, key, err := Generate()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"", "dbk_", key, key + "x", strings.ToUpper(key), "correct-horse-battery-staple-0123456789"} {
		f.Add(s)
	}
	wellFormedID := regexp.MustCompile(`^[a-z0-9]{12}$`)
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := ParseID(s)
		switch got := IDOf(s); {
		case !ok && got != BootstrapID:
			t.Fatalf("IDOf(%q) = %q; ParseID refused it, so want %q", s, got, BootstrapID)
		case ok && (got != id || !wellFormedID.MatchString(id) || !strings.HasPrefix(s, "dbk_"+id+"_")):
			t.Fatalf("IDOf(%q) = %q, ParseID = %q: want a 12-character id that the key starts with", s, got, id)
		}

		// Any random bytes make a key that parses back to its id.
		random := make([]byte, idLen+secretBytes)
		copy(random, s)
		id, key, err := generate(bytes.NewReader(random))
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := ParseID(key); !ok || got != id {
			t.Fatalf("generated key %q parses to %q, %v; want %q", key, got, ok, id)
		}
	})
}
