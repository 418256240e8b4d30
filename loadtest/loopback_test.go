package main

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckLoopbackURL_AcceptsOnlyHostsThatResolveToLoopback(t *testing.T) {
	t.Parallel()

	hosts := map[string][]string{
		"localhost":   {"127.0.0.1", "::1"},
		"alias.test":  {"127.0.1.1"},
		"db.internal": {"10.0.0.5"},
		"split.test":  {"127.0.0.1", "192.168.1.9"}, // one public answer is enough to refuse
		"empty.test":  {},
	}
	lookup := func(_ context.Context, host string) ([]net.IPAddr, error) {
		ips, ok := hosts[host]
		if !ok {
			return nil, errors.New("no such host")
		}
		addrs := make([]net.IPAddr, len(ips))
		for i, ip := range ips {
			addrs[i] = net.IPAddr{IP: net.ParseIP(ip)}
		}
		return addrs, nil
	}

	tests := []struct {
		url     string
		wantErr string // empty: accepted
	}{
		{"http://127.0.0.1:8080", ""},
		{"http://127.255.0.9", ""},
		{"http://[::1]:8080/prefix", ""},
		{"https://localhost:8443", ""},
		{"http://alias.test", ""},
		{"http://10.0.0.1:8080", "not a loopback address"},
		{"http://0.0.0.0:8080", "not a loopback address"},
		{"http://[::]:8080", "not a loopback address"},
		{"http://[2001:db8::1]", "not a loopback address"},
		{"http://db.internal:8080", "resolves to 10.0.0.5, which is not loopback"},
		{"http://split.test", "resolves to 192.168.1.9"},
		{"http://empty.test", "resolves to no address"},
		{"http://unknown.test", "no such host"},
		{"ftp://127.0.0.1", "scheme must be http or https"},
		{"http://", "no host"},
		{"://bad", "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()

			err := checkLoopbackURL(t.Context(), tt.url, lookup)

			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestLoopbackOnly_RefusesToDialAnythingElse(t *testing.T) {
	t.Parallel()

	tests := []struct {
		address string
		allowed bool
	}{
		{"127.0.0.1:8080", true},
		{"127.9.9.9:80", true},
		{"[::1]:8080", true},
		{"10.0.0.1:8080", false},
		{"[2001:db8::1]:443", false},
		{"localhost:8080", false}, // the hook sees resolved addresses only; a name means something went wrong
		{"no-port", false},
	}
	for _, tt := range tests {
		t.Run(tt.address, func(t *testing.T) {
			t.Parallel()

			err := loopbackOnly(t.Context(), "tcp", tt.address, nil)

			if tt.allowed {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}
