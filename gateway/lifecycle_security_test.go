package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/config"
	"github.com/geogate/geogate/gateway/deploy"
)

// TestLifecycleOverSecuredNATS runs the lifecycle on a secured ring (TLS,
// client certificates, per-region NKey users with the plan's permissions):
// b re-seeds from a (the lifecycle subject on a's server is granted to b,
// which pulls from a), positions cross the ring by gossip (a hears of b,
// which it does not pull from), the admin routes need the admin token, and
// c, which does not pull from a, is refused a's lifecycle subject.
func TestLifecycleOverSecuredNATS(t *testing.T) {
	regions := []string{"a", "b", "c"}
	m, err := deploy.WriteMaterial(t.TempDir(), regions, deploy.MaterialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, regions, "circular", nil, func(spec *ClusterSpec) {
		spec.Tune = func(c *config.Config) { m.Secure(c, c.Region) }
	}, lifecycleTune(nil))
	a, b, cc := c.Node("a"), c.Node("b"), c.Node("c")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: m.ClientTLS()}}
	call := func(method, url, role string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if role != "" {
			r, _ := auth.ParseRole(role)
			req.Header.Set("Authorization", "Bearer "+m.Tokens[r])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	for i := range 20 {
		if st, body := putSecured(t, client, m, a.HTTPURL(), fmt.Sprintf("k%d", i)); st != http.StatusOK {
			t.Fatalf("put: %d %s", st, body)
		}
	}
	eventually(t, 20*time.Second, "the ring to converge", sameData(t, a, b, cc))

	// The admin routes need the admin role.
	if st, _ := call("GET", a.HTTPURL()+"/v1/admin/snapshot", "reader"); st != http.StatusForbidden {
		t.Fatalf("snapshot with a reader token: %d, want 403", st)
	}
	if st, _ := call("POST", b.HTTPURL()+"/v1/admin/links/a/reseed", ""); st != http.StatusUnauthorized {
		t.Fatalf("reseed without a token: %d, want 401", st)
	}
	if st, body := call("GET", a.HTTPURL()+"/v1/admin/snapshot", "admin"); st != http.StatusOK || len(body) < 100 {
		t.Fatalf("snapshot with the admin token: %d, %d bytes", st, len(body))
	}
	// A forced re-seed over the secured link's credentials.
	if st, body := call("POST", b.HTTPURL()+"/v1/admin/links/a/reseed", "admin"); st != http.StatusAccepted {
		t.Fatalf("reseed: %d %s", st, body)
	}
	eventually(t, 20*time.Second, "b to re-seed from a", func() bool { return reseeds(b, "a") >= 1 })
	if last := b.Status().Lifecycle.Reseeds["a"].Last; last == nil || last.Error != "" || last.Records != 20 {
		t.Fatalf("re-seed over secured NATS: %+v", last)
	}
	// Positions cross the ring: a pulls only from c, yet comes to know
	// every region's, as its status shows to a reader.
	var st int
	var body []byte
	eventually(t, 10*time.Second, "a to hear of every region by gossip", func() bool {
		st, body = call("GET", a.HTTPURL()+"/v1/status", "reader")
		var status struct {
			Lifecycle struct {
				Known map[string]json.RawMessage `json:"known"`
			} `json:"lifecycle"`
		}
		return st == http.StatusOK && json.Unmarshal(body, &status) == nil && len(status.Lifecycle.Known) == 3
	})
	// c does not pull from a: a's server refuses c its lifecycle subject.
	v := newViolations()
	nc, err := nats.Connect(a.NATSURL(), append(cc.natsConn("test c", "a").Options(), v.handler())...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request(lifecycleSubject("a"), []byte(`{"op":"gossip","from":"c"}`), time.Second); err == nil {
		t.Fatal("c's lifecycle request to a was answered")
	}
	if !v.waitFor(lifecycleSubject("a"), 2*time.Second) {
		t.Fatal("no permission violation for c's lifecycle request to a")
	}
	// b's, granted, is answered.
	nb, err := nats.Connect(a.NATSURL(), b.natsConn("test b", "a").Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	if msg, err := nb.Request(lifecycleSubject("a"), []byte(`{"op":"gossip","from":"b"}`), 2*time.Second); err != nil {
		t.Fatalf("b's lifecycle request to a: %v", err)
	} else if !json.Valid(msg.Data) {
		t.Fatalf("b's lifecycle request to a: %q", msg.Data)
	}
}

func putSecured(t *testing.T, client *http.Client, m *deploy.Material, base, key string) (int, []byte) { //nolint:unparam // one caller
	t.Helper()
	req, err := http.NewRequest("PUT", base+"/v1/kv/"+key, strings.NewReader(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+m.Tokens[auth.Writer])
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}
