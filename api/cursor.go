package api

import (
	"strings"

	"github.com/google/uuid"
)

// Keyset pages are cut after the id of the last row of the previous page; a
// cursor is that id in its one canonical spelling.

// encodeCursor is the next_cursor of a page whose last row has id.
func encodeCursor(id uuid.UUID) *string {
	s := id.String()
	return &s
}

// decodeCursor reads a cursor this API gave out; "" is the first page. Only
// the canonical form is taken (uuid.Parse also reads braces, urn:uuid: and
// 32 bare hex digits), so one page has one cursor.
func decodeCursor(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil || id.String() != strings.ToLower(s) {
		return uuid.Nil, fieldError("query.cursor", s, "cursor is not one this API gave out (next_cursor of the previous page)")
	}
	return id, nil
}
