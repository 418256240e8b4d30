package archive

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestKey_DatesInUTC(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 23, 30, 0, 0, time.FixedZone("X", -3*3600)) // 02:30 UTC next day
	require.Equal(t, "2026/11/30/order_updates/abc.json", Key(at, "order_updates", "abc"))
}

func TestFileStore_PutManyIsIdempotent(t *testing.T) {
	t.Parallel()
	store, err := Open("file://" + t.TempDir())
	require.NoError(t, err)
	fs := store.(*FileStore)
	ctx := context.Background()
	require.NoError(t, fs.PutMany(ctx, []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{"a":1}`)}, {Key: "2026/01/02/s/2.json", Body: []byte(`{"b":1}`)}}))
	require.NoError(t, fs.PutMany(ctx, []Object{{Key: "2026/01/02/s/1.json", Body: []byte(`{"a":2}`)}}))
	got, err := os.ReadFile(fs.Path("2026/01/02/s/1.json"))
	require.NoError(t, err)
	require.Equal(t, `{"a":2}`, string(got))
	entries, err := os.ReadDir(fs.Path("2026/01/02/s"))
	require.NoError(t, err)
	require.Len(t, entries, 2)
}

func TestFileStore_RefusesEscapingKeys(t *testing.T) {
	t.Parallel()
	fs, err := NewFileStore(t.TempDir())
	require.NoError(t, err)
	require.Error(t, fs.PutMany(context.Background(), []Object{{Key: "../x.json", Body: []byte("{}")}}))
	require.Error(t, fs.PutMany(context.Background(), []Object{{Key: "/etc/x.json", Body: []byte("{}")}}))
}

func TestOpen_RejectsUnknownScheme(t *testing.T) {
	t.Parallel()
	_, err := Open("ftp://x/y")
	require.ErrorContains(t, err, "not supported")
}
