"""What the suites share, and the only test code one suite may import from outside itself:
fake_kube (an in-memory apiserver), processes (the three processes as console scripts),
identities (the chart's RBAC as test service accounts), chart (render/install the chart),
payloads (Meta's notifications, channel Secrets), sink (a stand-in instance), scrape
(Prometheus metrics), waiting (`eventually`: poll a condition instead of sleeping)."""
