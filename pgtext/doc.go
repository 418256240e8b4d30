// Package pgtext says whether text can be stored in the Postgres text and
// jsonb columns of a UTF-8 database, so that the API refuses with a 422
// naming the field what the INSERT would refuse with a 500.
//
// Go's encoding/json accepts, and quietly rewrites or keeps, three kinds of
// string that Postgres refuses: the escape \u0000 (SQLSTATE 22P05), an
// unpaired UTF-16 surrogate escape (22P02) and bytes that are not UTF-8
// (22021). jsonb also stores every number as numeric, which refuses some
// numbers that JSON allows (22003).
//
// It imports only the standard library.
package pgtext
