"""A fake Kubernetes API server on loopback: records every request, stores objects, plays the operator.

Real HTTP (a `ThreadingHTTPServer` on 127.0.0.1) reached through a temporary kubeconfig, so kr8s and
`KubeCluster` run unchanged. It keeps namespaced objects in memory (create, get, list with label and field
selectors, merge-patch, delete) and, standing in for the dask-kubernetes operator and a load balancer,
answers a new DaskCluster with a Running phase, a ready scheduler pod, a LoadBalancer service whose ingress
is 127.0.0.1 and whose ports are those of a real Dask scheduler the test started, and a ``<name>-default``
DaskWorkerGroup. Tests add canned pods (e.g. an OOM-killed worker) with `add_pod`.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

DASK = "kubernetes.dask.org/v1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str | None

    @property
    def plural(self) -> str:
        parts = self.path.strip("/").split("/")
        return parts[parts.index("namespaces") + 2] if "namespaces" in parts else parts[-1]


@dataclass
class FakeKube:
    scheduler_port: int = 8786
    dashboard_port: int = 8787
    requests: list[Request] = field(default_factory=list)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, ns, name)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> FakeKube:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                split = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                req = Request(self.command, split.path, query, body, self.headers.get("Content-Type"))
                with fake.lock:
                    fake.requests.append(req)
                    status, answer = fake.handle(req)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """Write a kubeconfig pointing at this server (token auth, plain HTTP on loopback)."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                    "contexts": [
                        {
                            "name": "fake",
                            "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                        }
                    ],
                    "current-context": "fake",
                }
            )
        )
        return path

    # -- what tests look at ----------------------------------------------------------------------------

    def sent(self, method: str | None = None, plural: str | None = None) -> list[Request]:
        """Recorded requests (all, or those of one method and/or resource kind)."""
        with self.lock:
            return [r for r in self.requests if (method in (None, r.method)) and (plural in (None, r.plural))]

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return copy.deepcopy(self.objects.get((plural, namespace, name)))

    def add_pod(self, namespace: str, pod: dict[str, Any]) -> None:
        """Serve a canned pod (its status as the kubelet would report it)."""
        pod = copy.deepcopy(pod)
        pod.setdefault("apiVersion", "v1")
        pod.setdefault("kind", "Pod")
        pod["metadata"].setdefault("namespace", namespace)
        with self.lock:
            self._store("pods", namespace, pod)

    # -- the API ---------------------------------------------------------------------------------------

    def _store(self, plural: str, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", ns)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = str(len(self.requests))
        self.objects[(plural, ns, meta["name"])] = obj
        return obj

    def handle(self, req: Request) -> tuple[int, Any]:
        parts = req.path.strip("/").split("/")
        if req.path.rstrip("/") == "/version":
            return 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"}
        if req.method == "GET" and req.path.rstrip("/") in _DISCOVERY:
            return 200, _DISCOVERY[req.path.rstrip("/")]
        if "namespaces" not in parts:
            return 404, _status(404, f"{req.path} is not served by the fake")
        i = parts.index("namespaces")
        ns, plural = parts[i + 1], parts[i + 2]
        name = parts[i + 3] if len(parts) > i + 3 else None
        key = (plural, ns, name)
        if req.method == "GET" and name is None:
            return 200, {
                "kind": "List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"},
                "items": [
                    copy.deepcopy(o)
                    for (p, n, _), o in sorted(self.objects.items())
                    if p == plural and n == ns and _selected(o, req.query)
                ],
            }
        if req.method == "GET":
            return (
                (200, copy.deepcopy(self.objects[key]))
                if key in self.objects
                else (404, _missing(plural, name))
            )
        if req.method == "POST":
            name = req.body["metadata"]["name"]
            if (plural, ns, name) in self.objects:
                return 409, _status(409, f'{plural} "{name}" already exists')
            obj = self._store(plural, ns, copy.deepcopy(req.body))
            if plural == "daskclusters":
                self._operator_creates(ns, obj)
            return 201, copy.deepcopy(obj)
        if req.method == "PATCH":
            if key not in self.objects:
                return 404, _missing(plural, name)
            merged = _merge(self.objects[key], req.body)
            self._store(plural, ns, merged)
            if plural == "daskclusters" and "worker" in (req.body.get("spec") or {}):
                self._operator_scales(ns, merged)
            return 200, copy.deepcopy(merged)
        if req.method == "DELETE":
            if key not in self.objects:
                return 404, _missing(plural, name)
            gone = self.objects.pop(key)
            if plural == "daskclusters":  # owner references: the cluster's children go with it
                for k in [k for k, o in self.objects.items() if k[1] == ns and _cluster_of(o) == name]:
                    del self.objects[k]
            return 200, gone
        return 405, _status(405, f"{req.method} not supported by the fake")

    def _operator_creates(self, ns: str, cluster: dict[str, Any]) -> None:
        name = cluster["metadata"]["name"]
        cluster["status"] = {"phase": "Running"}
        labels = {"dask.org/cluster-name": name, "dask.org/component": "scheduler"}
        self._store("pods", ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-scheduler-7d9f8c-abcde", "labels": labels},
            "spec": copy.deepcopy(cluster["spec"]["scheduler"]["spec"]),
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"},
                                                          {"type": "ContainersReady", "status": "True"}]},
        })  # fmt: skip
        service = copy.deepcopy(cluster["spec"]["scheduler"]["service"])
        service["type"] = service.get("type", "ClusterIP")
        for port in service["ports"]:  # the load balancer forwards to the test's real scheduler
            port["port"] = self.scheduler_port if port["name"] == "tcp-comm" else self.dashboard_port
        self._store("services", ns, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"{name}-scheduler", "labels": labels},
            "spec": service,
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}},
        })  # fmt: skip
        self._store("daskworkergroups", ns, {
            "apiVersion": DASK, "kind": "DaskWorkerGroup",
            "metadata": {"name": f"{name}-default", "labels": {"dask.org/cluster-name": name}},
            "spec": {"cluster": name, "worker": copy.deepcopy(cluster["spec"]["worker"])},
        })  # fmt: skip

    def _operator_scales(self, ns: str, cluster: dict[str, Any]) -> None:
        group = self.objects.get(("daskworkergroups", ns, f"{cluster['metadata']['name']}-default"))
        if group is not None:
            group["spec"]["worker"]["replicas"] = cluster["spec"]["worker"]["replicas"]


def _resources(group_version: str, kinds: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "groupVersion": group_version,
        "resources": [
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": True,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch"],
            }
            for plural, kind in kinds.items()
        ],
    }


_DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "kubernetes.dask.org", "versions": [{"groupVersion": DASK, "version": "v1"}],
         "preferredVersion": {"groupVersion": DASK, "version": "v1"}}]},
    "/api/v1": _resources("v1", {"pods": "Pod", "services": "Service"}),
    f"/apis/{DASK}": _resources(DASK, {"daskclusters": "DaskCluster", "daskworkergroups": "DaskWorkerGroup",
                                      "daskautoscalers": "DaskAutoscaler"}),
}  # fmt: skip


def _status(code: int, message: str) -> dict[str, Any]:
    reason = {404: "NotFound", 409: "AlreadyExists"}.get(code, "BadRequest")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _missing(plural: str, name: str | None) -> dict[str, Any]:
    return _status(404, f'{plural} "{name}" not found')


def _cluster_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get("dask.org/cluster-name") or (
        obj.get("spec") or {}
    ).get("cluster")


def _selected(obj: dict[str, Any], query: dict[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, query.get("labelSelector", "").split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        k, _, v = term.partition("=")
        value: Any = obj
        for part in k.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value != v:
            return False
    return True


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out
