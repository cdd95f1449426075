package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/geogate/geogate/gateway"
	"github.com/geogate/geogate/gateway/auth"
	"github.com/geogate/geogate/gateway/deploy"
	"github.com/geogate/geogate/topology/link"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// apiClient speaks the HTTP API to the regions of a run.
type apiClient struct {
	http  *http.Client
	urls  map[string]string // region -> base URL
	token string            // bearer token of secured regions, "" otherwise
}

// secure makes the client trust the run's CA and send its admin token (the
// testbed writes, reads and pauses links); nil leaves it as it is.
func (c *apiClient) secure(sec *deploy.Material) *apiClient {
	if sec == nil {
		return c
	}
	c.http.Transport.(*http.Transport).TLSClientConfig = sec.ClientTLS()
	c.token = sec.Tokens[auth.Admin]
	return c
}

func newAPIClient(urls map[string]string, timeout time.Duration, conns int) *apiClient {
	tr := &http.Transport{MaxIdleConns: conns * max(len(urls), 1), MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second}
	return &apiClient{http: &http.Client{Transport: tr, Timeout: timeout}, urls: urls}
}

func (c *apiClient) close() { c.http.CloseIdleConnections() }

// apiError is a non-2xx answer.
type apiError struct {
	Status int
	Code   string
	Msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Msg) }

// reason classifies a request error for counting: "503 stale",
// "transport", "timeout".
func reason(err error) string {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		if ae.Code != "" {
			return fmt.Sprintf("%d %s", ae.Status, ae.Code)
		}
		return strconv.Itoa(ae.Status)
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout"):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "transport"
}

func (c *apiClient) do(ctx context.Context, method, region, path string, body []byte, hdr map[string]string) (int, http.Header, []byte, error) {
	base, ok := c.urls[region]
	if !ok {
		return 0, nil, nil, fmt.Errorf("no region %q", region)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

func asAPIError(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	json.Unmarshal(body, &e) //nolint:errcheck // best effort: the status alone is enough
	return &apiError{Status: status, Code: e.Code, Msg: e.Error}
}

// writeAnswer is the body of a successful PUT.
type writeAnswer struct {
	Key     string `json:"key"`
	Context string `json:"context"`
	Session string `json:"session"`
	// Dot is the new version's dot "actor:counter", if the gateway says.
	Dot string `json:"dot"`
}

func (c *apiClient) put(ctx context.Context, region, key string, value []byte) (writeAnswer, error) {
	status, _, body, err := c.do(ctx, http.MethodPut, region, "/v1/kv/"+key, value, nil)
	if err != nil {
		return writeAnswer{}, err
	}
	if status != http.StatusOK {
		return writeAnswer{}, asAPIError(status, body)
	}
	var ans writeAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return writeAnswer{}, fmt.Errorf("decode write answer: %w", err)
	}
	return ans, nil
}

// get reads a key; 200, 300 and 404 are answers, not errors.
func (c *apiClient) get(ctx context.Context, region, key string, hdr map[string]string) (int, []byte, error) {
	status, _, body, err := c.do(ctx, http.MethodGet, region, "/v1/kv/"+key, nil, hdr)
	if err != nil {
		return 0, nil, err
	}
	switch status {
	case http.StatusOK, http.StatusMultipleChoices, http.StatusNotFound:
		return status, body, nil
	}
	return status, body, asAPIError(status, body)
}

// regionStatus is the body of GET /v1/status, as the gateway writes it.
type regionStatus = gateway.StatusReport

// statusLink is one link of it.
type statusLink = link.LinkStatus

func (c *apiClient) status(ctx context.Context, region string) (regionStatus, error) {
	status, _, body, err := c.do(ctx, http.MethodGet, region, "/v1/status", nil, nil)
	if err != nil {
		return regionStatus{}, err
	}
	if status != http.StatusOK {
		return regionStatus{}, asAPIError(status, body)
	}
	var st regionStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return regionStatus{}, fmt.Errorf("decode status: %w", err)
	}
	return st, nil
}

func (c *apiClient) healthy(ctx context.Context, region string) bool {
	status, _, _, err := c.do(ctx, http.MethodGet, region, "/healthz", nil, nil)
	return err == nil && status == http.StatusOK
}

// linkAdmin pauses or resumes the link from -> region at region.
func (c *apiClient) linkAdmin(ctx context.Context, region, from, action string) error {
	status, _, body, err := c.do(ctx, http.MethodPost, region, "/v1/admin/links/"+from+"/"+action, []byte("{}"), nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return asAPIError(status, body)
	}
	return nil
}
