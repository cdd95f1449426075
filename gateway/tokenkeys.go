package gateway

import (
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/gateway/config"
)

// loadTokenKeys sets the node's token keys at start: Options.TokenKeys,
// else security.token_keys_file (an unreadable or malformed file refuses
// the start), else the built-in insecure key, with a warning.
func (n *Node) loadTokenKeys() error {
	switch {
	case n.opts.TokenKeys != nil:
		n.tokens.keys.Store(n.opts.TokenKeys)
	case n.cfg.Security.TokenKeysFile != "":
		tk, err := LoadTokenKeys(n.cfg.Security.TokenKeysFile)
		if err != nil {
			return err
		}
		n.tokens.keys.Store(tk)
	default:
		n.tokens.keys.Store(InsecureTokenKeys())
		n.log.Warn("security.token_keys_file is not set: context and session tokens are signed with a built-in key anyone can use; geogate init writes a key file")
	}
	return nil
}

// watchTokenKeys re-reads security.token_keys_file every second and
// installs the keys when the file changed and parses; a file that does not
// keeps the current keys and is logged. It returns when ctx ends.
func (n *Node) watchTokenKeys(ctx context.Context, path string) {
	log := n.log.With("file", path)
	last, _ := os.Stat(path)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		info, err := os.Stat(path)
		if err != nil || (last != nil && sameFile(last, info)) {
			continue
		}
		last = info
		tk, err := LoadTokenKeys(path)
		if err != nil {
			n.metrics.keyReloads.WithLabelValues("error").Inc()
			log.Error("token key file changed but cannot be used; keeping the current keys", "err", err)
			continue
		}
		n.tokens.keys.Store(tk)
		n.metrics.keyReloads.WithLabelValues("ok").Inc()
		log.Info("token keys reloaded", "keys", len(tk.keys))
	}
}

// minFreeBytes maps storage.min_free_bytes to the store's option: 0 turns
// the guard off (negative there).
func minFreeBytes(b config.ByteSize) int64 {
	if b == 0 {
		return -1
	}
	return int64(b)
}

// badToken counts a refused token and returns its 400 answer.
func (n *Node) badToken(kind byte, err error) error {
	reason := "malformed"
	switch {
	case errors.Is(err, conflict.ErrTokenForged):
		reason = "forged"
	case errors.Is(err, conflict.ErrTokenKeyID):
		reason = "unknown_key"
	case errors.Is(err, conflict.ErrTokenKey):
		reason = "wrong_key"
	}
	if kind == conflict.TokenSession {
		n.metrics.tokenRejections.WithLabelValues("session", reason).Inc()
		return errorf(http.StatusBadRequest, "bad_session", "%s header: %v", HeaderSession, err)
	}
	n.metrics.tokenRejections.WithLabelValues("context", reason).Inc()
	return errorf(http.StatusBadRequest, "bad_context", "%s header: %v; pass back the token a read or write of this key returned", HeaderContext, err)
}
