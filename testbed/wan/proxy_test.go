package wan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/geogate/geogate/internal/wait"
)

// echoServer accepts connections and writes back whatever it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c) //nolint:errcheck // test echo
			}()
		}
	}()
	return ln.Addr().String()
}

// sinkServer accepts connections and discards what it reads.
func sinkServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(io.Discard, c) //nolint:errcheck // test sink
			}()
		}
	}()
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string, s Shape) *Proxy {
	t.Helper()
	p, err := New(Config{Target: target, Shape: s, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := p.Dialer().Dial("tcp", "ignored:1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and reads the echo, returning the time it took.
func roundTrip(t *testing.T, c net.Conn, msg []byte) time.Duration {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
	return time.Since(start)
}

func TestLatencyDelaysRoundTrip(t *testing.T) {
	const oneWay = 40 * time.Millisecond
	p := newProxy(t, echoServer(t), Symmetric(Profile{Latency: oneWay}))
	c := dial(t, p)
	for i := range 3 {
		if rtt := roundTrip(t, c, []byte("ping")); rtt < 2*oneWay {
			t.Fatalf("round trip %d took %s, want at least %s", i, rtt, 2*oneWay)
		}
	}
}

func TestDirectionsAreIndependent(t *testing.T) {
	const oneWay = 60 * time.Millisecond
	p := newProxy(t, echoServer(t), Shape{Down: Profile{Latency: oneWay}})
	c := dial(t, p)
	if rtt := roundTrip(t, c, []byte("x")); rtt < oneWay {
		t.Fatalf("round trip took %s, want at least the down latency %s", rtt, oneWay)
	}
	if got := p.Shape(); got.Up.Latency != 0 || got.Down.Latency != oneWay {
		t.Fatalf("Shape() = %+v, want only down latency", got)
	}
}

func TestJitterKeepsByteOrder(t *testing.T) {
	p := newProxy(t, echoServer(t), Symmetric(Profile{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond}))
	c := dial(t, p)
	var want bytes.Buffer
	errc := make(chan error, 1)
	go func() {
		for i := range 500 {
			msg := []byte{byte(i), byte(i >> 8), '.'}
			want.Write(msg)
			if _, err := c.Write(msg); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 500*3)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes came back reordered or corrupted under jitter")
	}
}

func TestSetShapeAppliesToOpenConnections(t *testing.T) {
	p := newProxy(t, echoServer(t), Shape{})
	c := dial(t, p)
	fast := roundTrip(t, c, []byte("a"))
	const oneWay = 50 * time.Millisecond
	p.SetShape(Symmetric(Profile{Latency: oneWay}))
	slow := roundTrip(t, c, []byte("b"))
	if slow < 2*oneWay {
		t.Fatalf("after SetShape the round trip took %s, want at least %s (before: %s)", slow, 2*oneWay, fast)
	}
}

func TestPartitionBlocksAndHealRestores(t *testing.T) {
	p := newProxy(t, echoServer(t), Shape{})
	c := dial(t, p)
	roundTrip(t, c, []byte("before"))

	p.Partition()
	if !p.Partitioned() {
		t.Fatal("Partitioned() = false after Partition")
	}
	// The open connection is cut: reading ends with an error, not a hang.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read on a partitioned connection succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("partition did not close the open connection")
	}
	// New dials fail through the dialer...
	if _, err := p.Dialer().Dial("tcp", ""); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("dial while partitioned: err = %v, want ErrPartitioned", err)
	}
	// ...and connections made to the listen address are closed at once.
	raw, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	raw.Write([]byte("x")) //nolint:errcheck // may fail; the read decides
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("a connection accepted during the partition forwarded data")
	}
	st := p.Stats()
	if st.Cut < 1 || st.Refused < 2 {
		t.Fatalf("stats after partition = %+v, want cut >= 1 and refused >= 2", st)
	}

	p.Heal()
	c2 := dial(t, p)
	roundTrip(t, c2, []byte("after"))
}

func TestBlackholeHoldsBytesUntilCleared(t *testing.T) {
	p := newProxy(t, echoServer(t), Shape{Down: Profile{Blackhole: true}})
	c := dial(t, p)
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4)); err == nil || n > 0 {
		t.Fatalf("read %d bytes through a blackholed direction", n)
	}
	p.SetShape(Shape{})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
		t.Fatalf("after clearing the blackhole read %q, %v; want the held bytes", got, err)
	}
}

func TestDropCutsConnections(t *testing.T) {
	p := newProxy(t, echoServer(t), Symmetric(Profile{Drop: 1}))
	c := dial(t, p)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("x")) //nolint:errcheck // the read decides
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("a chunk got through with drop = 1")
	}
	wait.For(t, 5*time.Second, "one dropped connection", func() bool { return p.Stats().Dropped > 0 })
}

func TestBandwidthCapRoughlyHonoured(t *testing.T) {
	const capBps = 256 << 10 // 256 KiB/s
	const total = 384 << 10  // 1.5 s at the cap
	p := newProxy(t, sinkServer(t), Shape{Up: Profile{Bandwidth: capBps}})
	c := dial(t, p)
	start := time.Now()
	buf := make([]byte, total)
	if _, err := c.Write(buf); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 20*time.Second, fmt.Sprintf("all %d bytes to arrive", total), func() bool { return p.Stats().BytesUp >= total })
	elapsed := time.Since(start)
	throughput := float64(total) / elapsed.Seconds()
	if throughput > 2*capBps {
		t.Fatalf("throughput %.0f B/s over a cap of %d B/s (more than 2x)", throughput, capBps)
	}
}

func TestValidateRejectsBadProfiles(t *testing.T) {
	cases := []struct {
		name string
		p    Profile
		ok   bool
	}{
		{"zero", Profile{}, true},
		{"wan", Profile{Latency: 80 * time.Millisecond, Jitter: 20 * time.Millisecond, Bandwidth: 1 << 20, Drop: 0.01}, true},
		{"negative latency", Profile{Latency: -1}, false},
		{"negative jitter", Profile{Jitter: -1}, false},
		{"negative bandwidth", Profile{Bandwidth: -1}, false},
		{"drop over one", Profile{Drop: 1.5}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			p, err := New(Config{Target: "127.0.0.1:1", Shape: Symmetric(tc.p)})
			if (err == nil) != tc.ok {
				t.Fatalf("New() err = %v, want ok=%v", err, tc.ok)
			}
			if p != nil {
				p.Close()
			}
		})
	}
}

func TestCloseEndsConnectionsAndDials(t *testing.T) {
	p, err := New(Config{Target: echoServer(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.Dialer().Dial("tcp", "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, []byte("x"))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Close")
	}
	if _, err := p.Dialer().Dial("tcp", ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("dial after Close: %v, want ErrClosed", err)
	}
	if p.Close() != nil {
		t.Fatal("second Close failed")
	}
}
