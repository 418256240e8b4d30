// Package projections owns the read models built from the event log: the
// orders projection (table orders) today. Each projection can be applied
// inside the writer's transaction and rebuilt from the log alone; it reads
// event data by its own decoding, never by importing the writer's package.
package projections
