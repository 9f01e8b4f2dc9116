#!/usr/bin/env python3
"""Project rules for the rendered Kubernetes manifests (what a schema cannot check).

Usage: policy.py RENDERED.yaml   -> one "ok"/"FAIL" line per rule; exit 1 if any rule fails.
"""
from __future__ import annotations

import re
import sys

import yaml

NAMESPACE = "jessy"
# name -> (port, liveness path, readiness path, configmap)
SERVICES = {
    "jessy-core": (8080, "/health", "/ready"),
    "jessy-api": (3000, "/api/health", "/api/ready"),
}
# Environment variables the services understand (.tmp/CONTRACTS.md).
KNOWN_ENV = {
    "jessy-core": {
        "JESSY_HOST", "JESSY_PORT", "REQUEST_TIMEOUT", "MAX_BODY_SIZE", "SHUTDOWN_TIMEOUT",
        "SHUTDOWN_DELAY", "LOG_FORMAT", "RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
    },
    "jessy-api": {
        "API_HOST", "API_PORT", "RUST_SERVICE_URL", "UPSTREAM_CONNECT_TIMEOUT", "UPSTREAM_TIMEOUT",
        "UPSTREAM_PROBE_INTERVAL", "RATE_LIMIT_ENABLED", "RATE_LIMIT_REQUESTS", "RATE_LIMIT_WINDOW",
        "RATE_LIMIT_BURST", "TRUSTED_PROXIES", "MAX_BODY_SIZE", "HEADER_READ_TIMEOUT",
        "CLIENT_BODY_TIMEOUT", "CLIENT_SEND_TIMEOUT", "MAX_CONCURRENT_REQUESTS", "CORS_ALLOWED_ORIGINS", "SHUTDOWN_TIMEOUT", "SHUTDOWN_DELAY",
        "LOG_FORMAT", "RUST_LOG", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME",
    },
}
# The defaults from the contract, used when a ConfigMap leaves a value out.
DEFAULTS = {"SHUTDOWN_TIMEOUT": "30s", "SHUTDOWN_DELAY": "0s", "REQUEST_TIMEOUT": "10s", "UPSTREAM_TIMEOUT": "10s"}

results: list[tuple[bool, str]] = []


def check(cond: bool, what: str) -> bool:
    results.append((bool(cond), what))
    return bool(cond)


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", value.strip())
    if not m:
        raise ValueError(f"not a duration: {value!r}")
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    for d in docs:
        ident = f'{d["kind"]}/{d["metadata"]["name"]}'
        labels = d["metadata"].get("labels", {})
        check(labels.get("app.kubernetes.io/part-of") == "jessy" and "app.kubernetes.io/name" in labels,
              f"{ident}: app.kubernetes.io/name and part-of=jessy labels")
        if d["kind"] != "Namespace":
            check(d["metadata"].get("namespace") == NAMESPACE, f"{ident}: in namespace {NAMESPACE}")
    check(("Namespace", NAMESPACE) in by, f"Namespace {NAMESPACE} is part of the manifests")

    for name, (port, live, ready) in SERVICES.items():
        dep = by.get(("Deployment", name))
        if not check(dep is not None, f"Deployment/{name} exists"):
            continue
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        sel = spec["selector"]["matchLabels"]
        tmpl_labels = spec["template"]["metadata"]["labels"]
        check(all(tmpl_labels.get(k) == v for k, v in sel.items()), f"{name}: selector matches the pod labels")
        ru = spec.get("strategy", {}).get("rollingUpdate", {})
        check(spec.get("strategy", {}).get("type") == "RollingUpdate" and ru.get("maxUnavailable") == 0,
              f"{name}: RollingUpdate with maxUnavailable 0")
        psc = pod.get("securityContext", {})
        check(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 1000 and psc.get("runAsGroup") == 1000
              and psc.get("fsGroup") == 1000 and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{name}: pod securityContext (non-root 1000:1000, fsGroup 1000, seccomp RuntimeDefault)")
        check(pod.get("automountServiceAccountToken") is False, f"{name}: no service-account token mounted")
        ctrs = pod["containers"]
        check(len(ctrs) == 1, f"{name}: one container")
        c = ctrs[0]
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
              and sc.get("capabilities", {}).get("drop") == ["ALL"] and sc.get("runAsNonRoot") is True,
              f"{name}: container securityContext (read-only root, no escalation, drop ALL)")
        check(re.fullmatch(rf"[a-z0-9./:-]*/?(OWNER|[a-z0-9-]+)/{name}(:[\w.-]+|@sha256:[0-9a-f]{{64}})", c["image"]) is not None,
              f"{name}: image {c['image']} is .../{name} with a tag or digest")
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        check(ports.get("http") == port, f"{name}: container port http={port}")
        for probe, path_ in (("startupProbe", live), ("livenessProbe", live), ("readinessProbe", ready)):
            hg = c.get(probe, {}).get("httpGet", {})
            check(hg.get("path") == path_ and hg.get("port") in ("http", port), f"{name}: {probe} GET {path_}")
        res = c.get("resources", {})
        check(all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")),
              f"{name}: cpu+memory requests and limits")
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        check(len(tmp) == 1 and "emptyDir" in vols.get(tmp[0]["name"], {}), f"{name}: emptyDir at /tmp")
        # Configuration comes from the ConfigMap of the same name.
        refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
        cm = by.get(("ConfigMap", name))
        if check(refs == [name] and cm is not None, f"{name}: envFrom ConfigMap/{name}"):
            data = cm.get("data", {})
            unknown = set(data) - KNOWN_ENV[name]
            check(not unknown, f"{name}: ConfigMap has only contract variables (unknown: {sorted(unknown)})")
            port_var = "JESSY_PORT" if name == "jessy-core" else "API_PORT"
            check(data.get(port_var) == str(port), f"{name}: {port_var}={port} matches the container port")
            # Shutdown budget: SIGTERM -> keep accepting SHUTDOWN_DELAY -> drain <= SHUTDOWN_TIMEOUT,
            # all of it inside terminationGracePeriodSeconds (the kubelet SIGKILLs after that).
            delay = seconds(data.get("SHUTDOWN_DELAY", DEFAULTS["SHUTDOWN_DELAY"]))
            drain = seconds(data.get("SHUTDOWN_TIMEOUT", DEFAULTS["SHUTDOWN_TIMEOUT"]))
            grace = pod.get("terminationGracePeriodSeconds", 30)
            prestop = c.get("lifecycle", {}).get("preStop", {})
            check("exec" not in prestop, f"{name}: no exec preStop (the image has no shell)")
            sleep = prestop.get("sleep", {}).get("seconds", 0)
            check(sleep + delay + drain < grace,
                  f"{name}: preStop {sleep}s + SHUTDOWN_DELAY {delay:g}s + SHUTDOWN_TIMEOUT {drain:g}s < grace {grace}s")
            check(sleep + delay > 0, f"{name}: endpoint-removal delay > 0 (preStop sleep or SHUTDOWN_DELAY)")
            req_timeout = "REQUEST_TIMEOUT" if name == "jessy-core" else "UPSTREAM_TIMEOUT"
            check(drain > seconds(data.get(req_timeout, DEFAULTS[req_timeout])),
                  f"{name}: SHUTDOWN_TIMEOUT > {req_timeout} (in-flight requests can finish)")
        svc = by.get(("Service", name))
        if check(svc is not None, f"Service/{name} exists"):
            check(all(tmpl_labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
                  f"Service/{name}: selector matches the pods")
            check(any(p["port"] == port and p.get("targetPort") in ("http", port) for p in svc["spec"]["ports"]),
                  f"Service/{name}: port {port} -> http")
        pdb = by.get(("PodDisruptionBudget", name))
        check(pdb is not None and pdb["spec"]["selector"]["matchLabels"] == sel, f"PodDisruptionBudget/{name} selects the pods")

    api_cm = by.get(("ConfigMap", "jessy-api"), {}).get("data", {})
    check(api_cm.get("RUST_SERVICE_URL") == "http://jessy-core:8080", "gateway reaches the core through Service jessy-core")

    hpa = by.get(("HorizontalPodAutoscaler", "jessy-api"))
    check(hpa is not None and hpa["apiVersion"] == "autoscaling/v2"
          and hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "jessy-api"}
          and 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], "HPA autoscaling/v2 on Deployment/jessy-api, min >= 2")
    check("replicas" not in by[("Deployment", "jessy-api")]["spec"], "gateway Deployment leaves replicas to the HPA")

    ing = by.get(("Ingress", "jessy-api"))
    if check(ing is not None, "Ingress/jessy-api exists"):
        ann = ing["metadata"].get("annotations", {})
        check(ing["spec"].get("ingressClassName") == "nginx", "Ingress: ingressClassName nginx")
        check(ann.get("nginx.ingress.kubernetes.io/ssl-redirect") == "true"
              and ann.get("nginx.ingress.kubernetes.io/force-ssl-redirect") == "true", "Ingress: HTTP -> HTTPS redirect")
        tls_hosts = {h for t in ing["spec"].get("tls", []) if t.get("secretName") == "jessy-tls" for h in t.get("hosts", [])}
        rule_hosts = {r.get("host") for r in ing["spec"]["rules"]}
        check(rule_hosts and rule_hosts <= tls_hosts, f"Ingress: every host {sorted(rule_hosts)} has TLS from Secret jessy-tls")
        backends = {p["backend"]["service"]["name"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
        check(backends == {"jessy-api"}, "Ingress: routes only to Service jessy-api")

    np_ = by.get(("NetworkPolicy", "jessy-core-ingress"))
    if check(np_ is not None, "NetworkPolicy for the core exists"):
        core_sel = by[("Deployment", "jessy-core")]["spec"]["selector"]["matchLabels"]
        api_labels = by[("Deployment", "jessy-api")]["spec"]["template"]["metadata"]["labels"]
        check(np_["spec"]["podSelector"]["matchLabels"] == core_sel and np_["spec"]["policyTypes"] == ["Ingress"],
              "NetworkPolicy selects the core pods (Ingress)")
        pod_peers = [p["podSelector"]["matchLabels"] for r in np_["spec"]["ingress"] for p in r.get("from", [])
                     if "podSelector" in p and "namespaceSelector" not in p]
        check(pod_peers and all(all(api_labels.get(k) == v for k, v in peer.items()) for peer in pod_peers),
              "NetworkPolicy: the only pod peers are the gateway pods")
        check(all(r.get("from") for r in np_["spec"]["ingress"]), "NetworkPolicy: no rule open to everyone")

    failed = 0
    for ok, what in results:
        print(("ok   " if ok else "FAIL ") + what)
        failed += not ok
    print(f"policy: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
