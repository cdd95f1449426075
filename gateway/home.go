package gateway

import (
	"net/http"

	"github.com/geogate/geogate/conflict"
	"github.com/geogate/geogate/rules"
	"github.com/geogate/geogate/store"
)

// routeHome handles a write for a key governed by a home_region rule at a
// region that is not the key's home. It returns handled=true when it has
// answered the request (forwarded, redirected or rejected).
func (n *Node) routeHome(w http.ResponseWriter, r *http.Request, rule *rules.Rule, mut *store.Mutation, session conflict.VV) (bool, error) {
	return false, nil
}

// afterLocalWrite runs after a local write is durable.
func (n *Node) afterLocalWrite(key string) {}

// afterApply runs after a batch of replicated events is durable.
func (n *Node) afterApply(batch []store.Incoming, res []store.ApplyResult) {}
