package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// peerTimeout bounds one request this region makes to another region's
// API on behalf of a client (status of the deployment, a link action
// there).
const peerTimeout = 3 * time.Second

// deploymentView serves the parts of the API that look at the whole
// deployment from one region, so that a page served by this region (the
// web console) never needs to reach another origin: GET
// /v1/status?peers=true, and link actions at another region
// (POST /v1/admin/links/{peer}/{action}?at=REGION). Requests to the other
// regions go to their configured HTTP URLs (regions.<name>.http) with the
// client's Authorization header, so they are allowed exactly as the
// client's own requests would be.
type deploymentView struct {
	n      *Node
	client *http.Client
}

func newDeploymentView(n *Node) *deploymentView {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	if n.sec != nil && n.sec.peerRoots != nil {
		// The other regions' certificates come from the deployment's CA.
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: n.sec.peerRoots}
	}
	return &deploymentView{n: n, client: &http.Client{Transport: tr, Timeout: peerTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// peerURLs returns every region's HTTP base URL as this region reaches it.
func (n *Node) peerURLs() map[string]string {
	out := map[string]string{}
	for r, e := range n.current().cfg.Regions { // as the last topology reload left them
		out[r] = e.HTTP
	}
	// n.peers: the addresses in use, set by Start, changed by a topology
	// reload.
	n.mu.Lock()
	for r, p := range n.peers {
		if p.HTTP != "" {
			out[r] = p.HTTP
		}
	}
	n.mu.Unlock()
	out[n.cfg.Region] = n.HTTPURL()
	return out
}

// statusWithPeers is GET /v1/status: the region's StatusReport and every
// region's URL; with ?peers=true also every other region's status.
type statusWithPeers struct {
	StatusReport
	// URLs maps every region of the deployment to its HTTP base URL.
	URLs map[string]string `json:"urls"`
	// Peers is, with ?peers=true, each other region's /v1/status (or why
	// it could not be had), in the deployment's region order.
	Peers []peerStatus `json:"peers,omitempty"`
}

// peerStatus is another region's status as this region could read it.
type peerStatus struct {
	Region string          `json:"region"`
	URL    string          `json:"url"`
	Status json.RawMessage `json:"status,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// handleStatus answers GET /v1/status.
func (d *deploymentView) handleStatus(w http.ResponseWriter, r *http.Request) {
	n := d.n
	ans := statusWithPeers{StatusReport: n.Status(), URLs: n.peerURLs()}
	if p := r.URL.Query().Get("peers"); p == "true" || p == "1" {
		ans.Peers = d.peerStatuses(r)
	}
	writeJSON(w, http.StatusOK, ans)
}

// peerStatuses reads every other region's status in parallel.
func (d *deploymentView) peerStatuses(r *http.Request) []peerStatus {
	urls := d.n.peerURLs()
	var out []peerStatus
	for _, region := range d.n.cfg.Order() {
		if region != d.n.cfg.Region {
			out = append(out, peerStatus{Region: region, URL: urls[region]})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			p := &out[i]
			status, body, err := d.forward(r.Context(), r, http.MethodGet, p.URL+"/v1/status")
			switch {
			case err != nil:
				p.Error = err.Error()
			case status != http.StatusOK:
				p.Error = fmt.Sprintf("answered %d: %s", status, body)
			case !json.Valid(body):
				p.Error = "answered something that is not JSON"
			default:
				p.Status = body
			}
		})
	}
	wg.Wait()
	return out
}

// handleLinkAdmin answers POST /v1/admin/links/{peer}/{action}: at this
// region, or with ?at=REGION at that region (forwarded, its answer
// relayed).
func (d *deploymentView) handleLinkAdmin(w http.ResponseWriter, r *http.Request) {
	n := d.n
	at := r.URL.Query().Get("at")
	if at == "" || at == n.cfg.Region {
		n.handleLinkAdmin(w, r)
		return
	}
	base, ok := n.peerURLs()[at]
	if !ok {
		regions := slices.Sorted(maps.Keys(n.cfg.Regions))
		writeError(w, errorf(http.StatusNotFound, "no_region", "no region %q in this deployment (regions: %v)", at, regions))
		return
	}
	target := base + "/v1/admin/links/" + url.PathEscape(r.PathValue("peer")) + "/" + url.PathEscape(r.PathValue("action"))
	status, body, err := d.forward(r.Context(), r, r.Method, target)
	if err != nil {
		writeError(w, errorf(http.StatusBadGateway, "peer_unreachable", "region %s (%s) did not answer: %v", at, base, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // client gone
}

// forward makes one request to another region with the client's
// Authorization header and returns its status and body (up to 4 MiB).
func (d *deploymentView) forward(ctx context.Context, from *http.Request, method, target string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return 0, nil, err
	}
	if a := from.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	req.Header.Set("X-Geo-Forwarded-By", d.n.cfg.Region)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, body, nil
}
