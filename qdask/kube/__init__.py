"""Kubernetes support: DaskCluster specs built by qdask, memory estimates per task, OOM kills made visible.

- `spec`: the DaskCluster resource qdask sends to the dask-kubernetes operator (``dask worker``, requests =
  limits, ``--memory-limit`` = 0.9 x the pod limit, spill on a disk-backed ``emptyDir``), validated against
  the operator's own CRD schemas before anything is created;
- `memory`: each task's peak memory estimated from the input's Parquet footers, units sized to fit;
- `oom`: why workers died (a pod's last termination reason via kr8s, or the nanny's memory restart) and
  which unit each was running.
"""
