package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/geogate/geogate/client"
)

// checkEvery is how often (every n-th write, and the first) the load
// generator decodes a write answer in full and checks it; the others are
// checked by status only, to keep the generator's CPU off the measurement.
const checkEvery = 256

// httpPuts runs n PUTs of fresh keys bench-<prefix>-<i> from `clients`
// keep-alive clients and returns the rate of acknowledged (200) writes.
//
// Each client is one HTTP/1.1 connection with one request in flight, like
// wrk's: a lean load generator, so that on a small machine the benchmark's
// own client does not eat the CPU the gateway is measured on (net/http's
// client costs about a fifth of two cores at these rates). Every answer is
// read whole and its status checked; every checkEvery-th is decoded as the
// Go client decodes it (client.WriteResult) and must name the key, its
// new version, its context and a session.
func httpPuts(ctx context.Context, base, prefix string, n, clients int) (float64, error) {
	return httpPutsAs(ctx, base, prefix, n, clients, nil, "")
}

// httpPutsAs is httpPuts against an https base URL (the connections trust
// tc, which should keep a session cache so that they resume TLS sessions)
// with a bearer token, or over plain HTTP with tc nil. The connections are
// set up before the clock starts, as keep-alive connections would be.
func httpPutsAs(ctx context.Context, base, prefix string, n, clients int, tc *tls.Config, token string) (float64, error) {
	body := []byte(`{"name":"benchmark","n":123456,"tags":["a","b"]}`)
	return spread(ctx, []string{base}, n, clients, tc, token, func(c *putConn, host string, i int) error {
		return c.put(fmt.Sprintf("bench-%s-%d", prefix, i), host, body, i%checkEvery == 0)
	})
}

// putConn is one keep-alive HTTP/1.1 connection.
type putConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	auth string // the Authorization header line, or ""
}

// dialPut connects to host, over TLS when tc is set (handshake done here).
func dialPut(ctx context.Context, host string, tc *tls.Config) (*putConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		conn = tconn
	}
	return &putConn{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}, nil
}

// put sends one PUT of key (no byte of it needs escaping) and reads its
// whole answer; anything but 200 is an error, and so is an answer that,
// when check is set, does not decode to a write result for key.
func (c *putConn) put(key, host string, body []byte, check bool) error {
	return c.request("PUT", key, host, body, check)
}

// get sends one GET of key and reads its whole answer; anything but 200 is
// an error.
func (c *putConn) get(key, host string) error {
	return c.request("GET", key, host, nil, false)
}

// request sends one request for /v1/kv/key with body (a PUT) or none (a
// GET) and reads the whole answer (see put).
func (c *putConn) request(method, key, host string, body []byte, check bool) error {
	path := "/v1/kv/" + key
	if body != nil {
		fmt.Fprintf(c.w, "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, host, c.auth, len(body))
		c.w.Write(body) //nolint:errcheck // surfaces at Flush
	} else {
		fmt.Fprintf(c.w, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", method, path, host, c.auth)
	}
	if err := c.w.Flush(); err != nil {
		return err
	}
	status, err := c.r.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	ok := bytes.HasPrefix(status, []byte("HTTP/1.1 200 "))
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		if len(line) <= 2 { // the blank line ending the header
			break
		}
		if name, value, found := bytes.Cut(line, []byte(":")); found && bytes.EqualFold(name, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return fmt.Errorf("%s %s: bad Content-Length %q", method, path, value)
			}
		}
	}
	if length < 0 {
		return fmt.Errorf("%s %s: answer without Content-Length", method, path)
	}
	if ok && check {
		if err := c.checkAnswer(key, length); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	if _, err := c.r.Discard(length); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if !ok {
		return fmt.Errorf("%s %s: %s", method, path, bytes.TrimSpace(status))
	}
	return nil
}

// checkAnswer decodes the answer's body, the next length bytes, without
// consuming them.
func (c *putConn) checkAnswer(key string, length int) error {
	b, err := c.r.Peek(length)
	if err == bufio.ErrBufferFull {
		return fmt.Errorf("write answer of %d bytes, more than a write answer takes", length)
	}
	if err != nil {
		return err
	}
	var ans client.WriteResult
	if err := json.Unmarshal(b, &ans); err != nil {
		return fmt.Errorf("write answer %q: %w", b, err)
	}
	if ans.Key != key || ans.Dot == "" || ans.Context == "" || ans.Session == "" {
		return fmt.Errorf("write answer %q does not name key %q, its version, context and session", b, key)
	}
	return nil
}
