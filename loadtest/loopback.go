package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
)

// lookupFunc resolves a host name; tests replace net.DefaultResolver with a table.
type lookupFunc func(ctx context.Context, host string) ([]net.IPAddr, error)

func defaultLookup(ctx context.Context, host string) ([]net.IPAddr, error) {
	return net.DefaultResolver.LookupIPAddr(ctx, host)
}

// checkLoopbackURL accepts an http(s) URL only when every address its host resolves to is
// loopback (127.0.0.0/8 or ::1): a load tool must never be pointed at someone else's server.
func checkLoopbackURL(ctx context.Context, raw string, lookup lookupFunc) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%q: no host", raw)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return fmt.Errorf("%q: %s is not a loopback address (127.0.0.0/8 or ::1)", raw, ip)
		}
		return nil
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return fmt.Errorf("%q: resolve %s: %w", raw, host, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%q: %s resolves to no address", raw, host)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return fmt.Errorf("%q: %s resolves to %s, which is not loopback (127.0.0.0/8 or ::1)", raw, host, a.IP)
		}
	}
	return nil
}

var errNotLoopback = errors.New("refusing to connect to a non-loopback address")

// loopbackOnly is a net.Dialer control hook: it runs on the resolved address just before
// connect, so neither DNS changing after the check nor a redirect can take traffic elsewhere.
func loopbackOnly(_ context.Context, _, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("dial %s: %w", address, errNotLoopback)
	}
	return nil
}
