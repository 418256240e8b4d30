package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/daybook/daybook/apikey"
	"github.com/daybook/daybook/migrations"
)

// keysCmd runs `daybook keys create|list|revoke`. Flags are checked before
// the database is opened, so a usage error needs no Postgres.
func keysCmd(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{"keys needs create, list or revoke"}
	}
	switch args[0] {
	case "create":
		return keysCreate(ctx, args[1:], out)
	case "list":
		return keysList(ctx, args[1:], out)
	case "revoke":
		return keysRevoke(ctx, args[1:], out)
	default:
		return usageError{fmt.Sprintf("keys: unknown subcommand %q", args[0])}
	}
}

// keysFlags parses args with fs; -h prints the flags on out.
func keysFlags(fs *flag.FlagSet, args []string, out io.Writer) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(out)
		fs.PrintDefaults()
		return err
	case err != nil:
		return usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	return nil
}

// createdKey is what `keys create` prints: the only time the key is shown.
type createdKey struct {
	ID        string   `json:"id"`
	Key       string   `json:"key"`
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	RateLimit float64  `json:"rate_limit,omitempty"`
}

func keysCreate(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	name := fs.String("name", "", "who or what the key is for (1 to 100 bytes)")
	scopesCSV := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(apikey.Scopes(), ", "))
	rate := fs.Float64("rate-limit", 0, "events per second for this key (0 = DAYBOOK_RATE_LIMIT)")
	if err := keysFlags(fs, args, out); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("keys create: unexpected argument %q", fs.Arg(0))}
	case *name == "":
		return usageError{"keys create needs --name"}
	case *scopesCSV == "":
		return usageError{"keys create needs --scopes"}
	case *rate < 0 || math.IsNaN(*rate) || math.IsInf(*rate, 0):
		return usageError{"keys create: --rate-limit wants a number ≥ 0"}
	}
	scopes, err := apikey.ParseScopes(*scopesCSV)
	if err != nil {
		return usageError{"keys create: " + err.Error()}
	}

	pool, err := openMigratedPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	k, key, err := apikey.NewStore(pool).Create(ctx, apikey.CreateParams{Name: *name, Scopes: scopes, RateLimit: *rate})
	if errors.Is(err, apikey.ErrInvalid) {
		return usageError{"keys create: " + err.Error()}
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(createdKey{ID: k.ID, Key: key, Name: k.Name, Scopes: k.Scopes, RateLimit: k.RateLimit})
}

// listedKey is one key of `keys list --json`: never its secret or hash.
type listedKey struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// RateLimit is null when the key takes the server's default.
	RateLimit  *float64   `json:"rate_limit"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
}

func keysList(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := keysFlags(fs, args, out); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("keys list: unexpected argument %q", fs.Arg(0))}
	}
	pool, err := openMigratedPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := apikey.NewStore(pool).List(ctx)
	if err != nil {
		return err
	}

	if *asJSON {
		list := make([]listedKey, 0, len(keys))
		for _, k := range keys {
			l := listedKey{ID: k.ID, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.CreatedAt.UTC(), LastUsedAt: utc(k.LastUsedAt), RevokedAt: utc(k.RevokedAt)}
			if k.RateLimit > 0 {
				l.RateLimit = &k.RateLimit
			}
			list = append(list, l)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tRATE\tCREATED\tLAST USED\tREVOKED")
	for _, k := range keys {
		rate := "-"
		if k.RateLimit > 0 {
			rate = strconv.FormatFloat(k.RateLimit, 'g', -1, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, oneLine(k.Name, 40), strings.Join(k.Scopes, ","), rate,
			k.CreatedAt.UTC().Format(time.RFC3339), timeOrDash(k.LastUsedAt), timeOrDash(k.RevokedAt))
	}
	fmt.Fprintf(tw, "%d key(s)\n", len(keys))
	return tw.Flush()
}

func keysRevoke(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return usageError{"keys revoke takes one key ID"}
	}
	id := args[0]
	pool, err := openMigratedPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := apikey.NewStore(pool).Revoke(ctx, id); errors.Is(err, apikey.ErrNotFound) {
		return fmt.Errorf("no key with id %s", id)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(out, "revoked %s\n", id)
	return nil
}

// openMigratedPool is openPool with the migrations applied, so that the
// first key can be made on a database no server has started on yet. It
// needs no Redis, unlike open.
func openMigratedPool(ctx context.Context) (*pgxpool.Pool, error) {
	pool, err := openPool(ctx)
	if err != nil {
		return nil, err
	}
	m, err := migrations.New(pool, migrations.Files())
	if err == nil {
		_, err = m.Up(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
