package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// kind is the type of a server message, for counting what is sent.
type kind uint8

const (
	kindSnapshot kind = iota
	kindDelta
	kindResumed
	kindLogs
	kindLogsSubscribed
	kindError
	kindPong
	kindClose // not a message: the writer closes the connection
	numKinds
)

var kindNames = [numKinds]string{"snapshot", "delta", "resumed", "logs", "logsSubscribed", "error", "pong", "close"}

// Reasons a connection is closed by the gateway, a bounded label set.
const (
	cutTooSlow      = "too_slow"
	cutWriteTimeout = "write_timeout"
	cutRateLimited  = "rate_limited"
	cutRebuilt      = "rebuilt"
	cutHistoryGap   = "history_gap"
	cutExpired      = "token_expired"
	cutShutdown     = "shutdown"
	cutPing         = "ping_timeout"
	cutInternal     = "internal"
)

// metrics are the gateway's Prometheus metrics. Per-message counters are
// resolved once, so that counting a message is one atomic add.
type metrics struct {
	connections prometheus.Gauge
	sent        [numKinds]prometheus.Counter
	received    *prometheus.CounterVec
	cuts        *prometheus.CounterVec
	lag         prometheus.Histogram
	fanned      prometheus.Counter
	gaps        prometheus.Counter
	logSubs     prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry, g *Gateway) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pbxpulse_gateway_connections", Help: "Open WebSocket connections."}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_gateway_client_messages_total",
			Help: "Messages received from WebSocket clients, by type (invalid: malformed or unknown; limited: over the rate limit)."}, []string{"type"}),
		cuts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_gateway_disconnects_total",
			Help: "WebSocket connections the gateway closed, by reason."}, []string{"reason"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "pbxpulse_gateway_delta_lag_seconds",
			Help:    "Time from the projector's commit of a delta to its fan-out to the tenant's clients.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}}),
		fanned:  prometheus.NewCounter(prometheus.CounterOpts{Name: "pbxpulse_gateway_deltas_total", Help: "Deltas fanned out by the tenants' hubs (each once, whatever the number of clients)."}),
		gaps:    prometheus.NewCounter(prometheus.CounterOpts{Name: "pbxpulse_gateway_history_gaps_total", Help: "Deltas that could not be read back (pruned); the tenant's clients were resynced."}),
		logSubs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pbxpulse_gateway_log_subscriptions", Help: "Active log subscriptions."}),
	}
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_gateway_messages_sent_total", Help: "Messages written to WebSocket clients, by type."}, []string{"type"})
	for k := range numKinds - 1 {
		m.sent[k] = sent.WithLabelValues(kindNames[k])
	}
	for _, t := range clientTypes {
		m.received.WithLabelValues(t)
	}
	for _, r := range []string{cutTooSlow, cutWriteTimeout, cutRateLimited, cutRebuilt, cutHistoryGap, cutExpired, cutShutdown, cutPing, cutInternal} {
		m.cuts.WithLabelValues(r)
	}
	reg.MustRegister(m.connections, sent, m.received, m.cuts, m.lag, m.fanned, m.gaps, m.logSubs, hubCollector{g})
	return m
}

var (
	hubsDesc    = prometheus.NewDesc("pbxpulse_gateway_hubs", "Tenants with a live hub (clients connected now or recently).", nil, nil)
	tenantDesc  = prometheus.NewDesc("pbxpulse_gateway_tenant_connections", "Open WebSocket connections per tenant with a live hub.", []string{"tenant"}, nil)
	versionDesc = prometheus.NewDesc("pbxpulse_gateway_view_version", "Last view version a tenant's hub fanned out.", []string{"tenant"}, nil)
)

// hubCollector reports per-tenant figures of the hubs alive at scrape time:
// the label set is bounded by the tenants connected, and a tenant's series
// go away with its hub.
type hubCollector struct{ g *Gateway }

func (c hubCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hubsDesc
	ch <- tenantDesc
	ch <- versionDesc
}

func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	hs := c.g.hubs.all()
	ch <- prometheus.MustNewConstMetric(hubsDesc, prometheus.GaugeValue, float64(len(hs)))
	for _, h := range hs {
		conns, version := h.stats()
		ch <- prometheus.MustNewConstMetric(tenantDesc, prometheus.GaugeValue, float64(conns), h.tenant)
		ch <- prometheus.MustNewConstMetric(versionDesc, prometheus.GaugeValue, float64(version), h.tenant)
	}
}
