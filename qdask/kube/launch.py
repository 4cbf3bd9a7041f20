"""Start (and always delete) a qdask DaskCluster through dask-kubernetes' operator-based `KubeCluster`.

The spec is built and checked by `qdask.kube.spec` first, so an invalid setting fails before any request
reaches Kubernetes. A fixed worker count is the spec's replica count; adaptive bounds become a
DaskAutoscaler (`KubeCluster.adapt`). The cluster is deleted when the context exits, whatever happened.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from qdask.config import KubernetesConfig
from qdask.kube.spec import check_cluster_spec, cluster_spec

__all__ = ["kube_cluster"]


@contextlib.contextmanager
def kube_cluster(
    k: KubernetesConfig,
    *,
    memory_limit: int | None = None,
    workers: int | None = None,
    service_type: str = "ClusterIP",
    resource_timeout: int = 300,
    staging_directory: str | None = None,
) -> Iterator[Any]:
    """A running `KubeCluster` for `k`, deleted on exit.

    `workers` overrides a fixed worker count (not adaptive bounds); `memory_limit` is Dask's limit per
    worker in bytes (default 0.9 x the pod limit); `service_type` is the scheduler service's type;
    `staging_directory` is mounted on the workers from the ``qdask-staging`` claim.
    """
    resource = cluster_spec(
        k,
        memory_limit=memory_limit,
        service_type=service_type,
        replicas=workers,
        staging_directory=staging_directory,
    )
    check_cluster_spec(resource)  # raises SpecError before anything is sent
    from dask_kubernetes.operator import KubeCluster

    logging.getLogger("dask_kubernetes").setLevel(logging.WARNING)
    cluster = KubeCluster(
        custom_cluster_spec=resource,
        namespace=k.namespace,
        shutdown_on_close=True,
        resource_timeout=resource_timeout,
        quiet=True,
    )
    try:
        if k.adaptive is not None and workers is None:
            cluster.adapt(minimum=k.adaptive.minimum, maximum=k.adaptive.maximum)
        yield cluster
    finally:
        cluster.close()
