package api

import (
	"strings"
	"testing"

	"github.com/google/uuid"
)

// FuzzDecodeCursor: a cursor round-trips, has one spelling, and anything
// else is a 422, never a panic or another page.
func FuzzDecodeCursor(f *testing.F) {
	for _, seed := range []string{
		"", "01a22516-0000-7000-8000-000000000001", "01A22516-0000-7000-8000-00000000000A",
		"{01a22516-0000-7000-8000-000000000001}", "urn:uuid:01a22516-0000-7000-8000-000000000001",
		"01a225160000700080000000000000001", "not-a-cursor", "01a22516-0000-7000-8000-00000000000g",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := decodeCursor(s)
		if err != nil {
			if id != uuid.Nil {
				t.Fatalf("decodeCursor(%q) refused but returned %s", s, id)
			}
			return
		}
		if s == "" {
			if id != uuid.Nil {
				t.Fatalf("the empty cursor is the first page, got %s", id)
			}
			return
		}
		if got := *encodeCursor(id); got != strings.ToLower(s) {
			t.Fatalf("decodeCursor(%q) = %s, which encodes as %q: a cursor must have one spelling", s, id, got)
		}
		again, err := decodeCursor(*encodeCursor(id))
		if err != nil || again != id {
			t.Fatalf("round trip of %s: %s, %v", id, again, err)
		}
	})
}
