package ingest

// Status is where an event stands in processing.
type Status string

// The states. The database trigger ingestion_events_guard holds the same
// transitions; CanTransition is the Go copy, checked before every write.
const (
	StatusPending    Status = "PENDING"
	StatusProcessing Status = "PROCESSING"
	StatusCompleted  Status = "COMPLETED"
	StatusFailed     Status = "FAILED"
)

var transitions = map[Status][]Status{
	StatusPending:    {StatusProcessing, StatusPending},
	StatusProcessing: {StatusCompleted, StatusFailed, StatusPending},
	StatusFailed:     {StatusPending},
}

// CanTransition reports whether an event may move from one status to another.
func CanTransition(from, to Status) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Valid reports whether s is one of the four states.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusProcessing, StatusCompleted, StatusFailed:
		return true
	}
	return false
}
