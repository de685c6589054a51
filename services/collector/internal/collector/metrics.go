package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collector's Prometheus series, labelled by PBX.
type metrics struct {
	events     *prometheus.CounterVec // normalized events enqueued
	amiMsgs    *prometheus.CounterVec // AMI messages read
	dropped    *prometheus.CounterVec // events refused by a full outbox
	drift      *prometheus.CounterVec // objects corrected by reconciliation, by list
	resyncs    *prometheus.CounterVec // full resyncs, by reason
	commands   *prometheus.CounterVec // commands, by action and result
	connected  *prometheus.GaugeVec   // 1 while CONNECTED
	leader     *prometheus.GaugeVec   // 1 while this replica holds the PBX's lease
	parseErrs  *prometheus.CounterVec // malformed AMI messages skipped
	outboxLen  *prometheus.GaugeVec
	registerer *prometheus.Registry
}

func newMetrics() *metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m := &metrics{
		events:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_collector_events_total", Help: "Normalized events enqueued for publishing."}, []string{"pbx", "source"}),
		amiMsgs:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_collector_ami_messages_total", Help: "AMI events read."}, []string{"pbx"}),
		dropped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_collector_events_dropped_total", Help: "Events refused because the outbox was full (NATS away too long); a resync follows."}, []string{"pbx"}),
		drift:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_collector_drift_total", Help: "Objects the periodic reconciliation found wrong and corrected."}, []string{"pbx", "list"}),
		resyncs:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_collector_resyncs_total", Help: "Full resyncs with the PBX."}, []string{"pbx", "reason"}),
		commands:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_collector_commands_total", Help: "Call-control commands handled."}, []string{"pbx", "action", "result"}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pbxpulse_collector_pbx_connected", Help: "1 while the PBX's AMI link is up and resynced."}, []string{"pbx"}),
		leader:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pbxpulse_collector_pbx_leader", Help: "1 while this replica holds the PBX's lease."}, []string{"pbx"}),
		parseErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pbxpulse_collector_ami_parse_errors_total", Help: "Malformed AMI messages skipped."}, []string{"pbx"}),
		outboxLen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pbxpulse_collector_outbox_events", Help: "Events queued or awaiting JetStream's ack."}, []string{"pbx"}),
	}
	r.MustRegister(m.events, m.amiMsgs, m.dropped, m.drift, m.resyncs, m.commands, m.connected, m.leader, m.parseErrs, m.outboxLen)
	m.registerer = r
	return m
}
