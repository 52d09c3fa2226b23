"""The shared core of the WhatsApp channel control plane.

`model` is the contract (names, spec/status, REST shapes and the mapping between
them), `reasons` the conditions' reasons, `channel_secret` the Secret the operator writes
for the receiver, `sealing` the credential encryption, `kube` the one Kubernetes client
adapter.
Nothing here imports FastAPI or Kopf.
"""
