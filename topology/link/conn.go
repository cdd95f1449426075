package link

import (
	"log/slog"

	"github.com/nats-io/nats.go"
)

// LogAsyncErrors returns the connection option that reports a NATS
// connection's asynchronous errors (a write to a server that went away, a
// slow consumer, a permissions violation) to log at warning level, with the
// connection's name and the subscription's subject when there is one.
// Without it nats.go writes them to standard error, outside the region's
// structured log. Every connection geogate opens uses it.
func LogAsyncErrors(log *slog.Logger) nats.Option {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		args := []any{"err", err}
		if nc != nil {
			args = append(args, "conn", nc.Opts.Name)
		}
		if sub != nil {
			args = append(args, "subject", sub.Subject)
		}
		log.Warn("nats connection error", args...)
	})
}
