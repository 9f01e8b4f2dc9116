#!/usr/bin/env python3
"""Turn one Deployment of the rendered manifests into something `podman kube play` can run.

Usage: localize.py RENDERED.yaml NAME IMAGE HOST_PORT [VAR=VALUE ...]

Writes (stdout) the ConfigMap NAME and the Deployment NAME, changed only where a single host
without a cluster needs it:
  * replicas 1; image IMAGE with imagePullPolicy Never (locally built, nothing is pulled);
  * the `http` port also published on 127.0.0.1:HOST_PORT (loopback only) for the health polls;
  * VAR=VALUE pairs override ConfigMap entries (the gateway's RUST_SERVICE_URL: there is no
    cluster DNS / Service here, see kube-play.sh);
  * fields podman does not implement and would only warn about are dropped
    (serviceAccountName, topologySpreadConstraints, enableServiceLinks, namespace);
  * the probes are dropped: podman turns an httpGet probe into a `curl` healthcheck run inside
    the container (there is no shell or curl in the image, and a named port becomes port 0),
    which on a host with systemd would mark the container unhealthy or restart it. kube-play.sh
    polls the probes' paths from the host instead (`probes` subcommand below).
securityContext, resources, envFrom, volumes and terminationGracePeriodSeconds stay as they are,
so the pod runs with the same user, read-only root, dropped capabilities and /tmp.

Usage: localize.py probes RENDERED.yaml NAME -> "startupProbe /health" lines (httpGet paths)
"""
import sys

import yaml


PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def deployment(docs, name):
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def main(argv):
    if len(argv) == 4 and argv[1] == "probes":
        with open(argv[2], encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        (ctr,) = deployment(docs, argv[3])["spec"]["template"]["spec"]["containers"]
        for probe in PROBES:
            print(probe, ctr[probe]["httpGet"]["path"])
        return 0
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    path, name, image, host_port = argv[1:5]
    overrides = dict(a.split("=", 1) for a in argv[5:])
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
    dep = deployment(docs, name)
    unknown = set(overrides) - set(cm["data"])
    if unknown:
        print(f"localize.py: {sorted(unknown)} not in ConfigMap {name}", file=sys.stderr)
        return 2
    cm["data"].update(overrides)
    for d in (cm, dep):
        d["metadata"].pop("namespace", None)
    dep["spec"]["replicas"] = 1
    pod = dep["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "topologySpreadConstraints", "enableServiceLinks"):
        pod.pop(key, None)
    (ctr,) = pod["containers"]
    ctr["image"] = image
    ctr["imagePullPolicy"] = "Never"
    for probe in PROBES:
        ctr.pop(probe, None)
    for port in ctr["ports"]:
        if port.get("name") == "http":
            port["hostPort"] = int(host_port)
            port["hostIP"] = "127.0.0.1"
    yaml.safe_dump_all([cm, dep], sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
