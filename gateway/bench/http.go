package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// httpPuts runs n PUTs of fresh keys bench-<prefix>-<i> from `clients`
// keep-alive clients and returns the rate of acknowledged writes.
func httpPuts(ctx context.Context, base, prefix string, n, clients int) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body := []byte(`{"name":"benchmark","n":123456,"tags":["a","b"]}`)
	return parallel(n, clients, func(i int) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/v1/kv/bench-%s-%d", base, prefix, i), bytes.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body) //nolint:errcheck // draining for keep-alive
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("PUT: %s", resp.Status)
		}
		return nil
	})
}
