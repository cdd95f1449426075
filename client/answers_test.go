package client_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/geogate/geogate/client"
)

// strictDo sends one request and decodes its body into dst, refusing fields dst
// lacks: the client's answer types must hold everything the server sends
// (a field added to an answer fails here until the type has it).
func strictDo(t *testing.T, method, url string, body []byte, dst any) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s %v", method, url, resp.StatusCode, b, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		t.Fatalf("%s %s: the answer %s does not fit %T: %v", method, url, b, dst, err)
	}
}

// TestAnswerTypes: every answer the server sends decodes into the client's
// types with no field left over, and the client's calls return them
// filled in.
func TestAnswerTypes(t *testing.T) {
	c := startRegions(t, []string{"r1", "r2"}, "all-to-all", nil)
	r1, r2 := urlOf(c, "r1"), urlOf(c, "r2")
	app := newClient(t, []string{r1})
	admin1, admin2 := newClient(t, []string{r1}), newClient(t, []string{r2})

	// A conflict: both regions write k while neither hears the other.
	for _, a := range []*client.Client{admin1, admin2} {
		peer := map[*client.Client]string{admin1: "r2", admin2: "r1"}[a]
		if _, err := a.PauseLink(bg, peer); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{r1, r2} {
		if _, err := stateless(t, u).Put(bg, "k", u); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []*client.Client{admin1, admin2} {
		peer := map[*client.Client]string{admin1: "r2", admin2: "r1"}[a]
		l, err := a.ResumeLink(bg, peer)
		if err != nil || l.From != peer {
			t.Fatalf("resume: %+v %v", l, err)
		}
	}
	var entries []client.ConflictEntry
	eventually(t, 10*time.Second, "a conflict logged", func() bool {
		var err error
		entries, err = app.Conflicts(bg, client.ConflictQuery{Key: "k"})
		return err == nil && len(entries) > 0
	})
	if e := entries[0]; e.Key != "k" || e.Rule != "default" || e.Kept == nil || len(e.Discarded) != 1 || e.At == 0 || e.Region != "r1" {
		t.Fatalf("conflict entry %+v", e)
	}
	var log struct {
		Conflicts []client.ConflictEntry `json:"conflicts"`
	}
	strictDo(t, "GET", r1+"/v1/conflicts", nil, &log)

	var w client.WriteResult
	strictDo(t, "PUT", r1+"/v1/kv/w", []byte(`{"a":1}`), &w)
	strictDo(t, "DELETE", r1+"/v1/kv/w", nil, &w)
	var m client.Meta
	strictDo(t, "GET", r1+"/v1/kv/k?meta=true", nil, &m)
	got, err := app.Meta(bg, "k")
	if err != nil || len(got.Versions) == 0 || got.Rule != "default" || got.Context == "" || got.Versions[0].Dot == "" || got.Versions[0].HLC.Wall == 0 {
		t.Fatalf("meta %+v %v", got, err)
	}
	var st client.Status
	strictDo(t, "GET", r1+"/v1/status", nil, &st)
	s, err := app.Status(bg)
	if err != nil || s.Region != "r1" || s.Actor == "" || len(s.Links) != 1 || s.Links[0].State != client.LinkUp || s.Links[0].From != "r2" {
		t.Fatalf("status %+v %v", s, err)
	}
	strictDo(t, "GET", r1+"/v1/status?peers=true", nil, &st)
	d, err := app.DeploymentStatus(bg)
	if err != nil || len(d.Peers) != 1 || d.Peers[0].Region != "r2" || d.Peers[0].Status == nil || d.Peers[0].Status.Region != "r2" || d.URLs["r2"] != r2 {
		t.Fatalf("deployment status %+v %v", d, err)
	}
	var l client.LinkStatus
	strictDo(t, "POST", r2+"/v1/admin/links/r1/resume", nil, &l)

	// Listing, page by page.
	for i := range 5 {
		if _, err := app.Put(bg, fmt.Sprintf("p/%d", i), i); err != nil {
			t.Fatal(err)
		}
	}
	var page client.KeyPage
	strictDo(t, "GET", r1+"/v1/kv?prefix=p/&limit=2", nil, &page)
	var keys []string
	q := client.ListQuery{Prefix: "p/", Limit: 2}
	for {
		p, err := app.List(bg, q)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, p.Keys...)
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	if strings.Join(keys, ",") != "p/0,p/1,p/2,p/3,p/4" {
		t.Fatalf("paged listing %q", keys)
	}
	if err := app.Health(bg); err != nil {
		t.Fatal(err)
	}
}
