module github.com/whatsapp-channels/controlplane/prometheus-operator

go 1.24.0

// Only for its CRDs (example/prometheus-operator-crd): the chart's ServiceMonitors and
// PrometheusRule are checked against them on the local apiserver. Nothing is built from it.
require github.com/prometheus-operator/prometheus-operator v0.85.0
