package metrics_test

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/graft-dev/graft/tools/fleet/metrics"
	"github.com/graft-dev/graft/tools/fleet/store"
)

func prometheusRegistry(db *store.Store) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(db, 0, nil))
	return reg
}
