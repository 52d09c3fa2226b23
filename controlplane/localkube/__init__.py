"""localkube: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)
built from pinned Go modules and run on loopback, for development, tests and CI."""

from localkube.cluster import Cluster
from localkube.processes import ClusterError

__all__ = ["Cluster", "ClusterError"]
