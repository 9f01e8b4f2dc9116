#!/usr/bin/env python3
"""Minimal kustomize renderer for deploy/k8s (used when neither kustomize nor kubectl exists).

It implements ONLY what deploy/k8s uses, and refuses anything else instead of guessing:
  kustomization keys: apiVersion, kind, resources (files or directories with a
  kustomization.yaml), namespace, labels (pairs + includeSelectors: false + includeTemplates),
  images (name -> newName / newTag / digest), patches (path: strategic-merge patch file whose
  kind + metadata.name select the target).
Order of the transformers as in kustomize: patches, namespace, labels, images.
validate.sh compares this renderer's output with `kubectl kustomize` whenever kubectl exists,
so the two cannot silently drift apart.

Usage: render.py DIR            -> multi-document YAML on stdout
"""
from __future__ import annotations

import copy
import os
import sys

import yaml

ALLOWED_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PriorityClass", "StorageClass", "PersistentVolume", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService",
}
WORKLOADS_WITH_TEMPLATE = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Strategic-merge list merge keys for the lists that can appear in our patches.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
    "envFrom": None, "volumeMounts": "mountPath", "ports": "containerPort",
    "imagePullSecrets": "name",
}


class RenderError(Exception):
    pass


def load_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def smp(base, patch, key=None):
    """Strategic merge patch, limited: maps merge, null deletes, keyed lists merge, others replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        if "$patch" in patch or any(k.startswith("$") for k in patch):
            raise RenderError(f"unsupported strategic-merge directive in patch: {sorted(patch)}")
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = smp(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and MERGE_KEYS.get(key):
        mk = MERGE_KEYS[key]
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            for i, existing in enumerate(out):
                if isinstance(existing, dict) and existing.get(mk) == item.get(mk):
                    out[i] = smp(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    name, digest = (ref.split("@", 1) + [None])[:2]
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def pod_specs(doc: dict):
    kind = doc.get("kind")
    if kind == "Pod":
        yield doc.get("spec", {})
    elif kind in WORKLOADS_WITH_TEMPLATE:
        yield doc.get("spec", {}).get("template", {}).get("spec", {})
    elif kind == "CronJob":
        yield doc.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})


def apply_images(docs: list[dict], images: list[dict]) -> None:
    for doc in docs:
        for spec in pod_specs(doc):
            for ctr in spec.get("containers", []) + spec.get("initContainers", []):
                name, tag, digest = split_image(ctr["image"])
                for img in images:
                    extra = set(img) - {"name", "newName", "newTag", "digest"}
                    if extra:
                        raise RenderError(f"unsupported images keys {sorted(extra)}")
                    if img["name"] != name:
                        continue
                    name = img.get("newName", name)
                    if "digest" in img:
                        tag, digest = None, img["digest"]
                    elif "newTag" in img:
                        tag, digest = str(img["newTag"]), None
                ref = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                ctr["image"] = ref


def apply_labels(docs: list[dict], label_specs: list[dict]) -> None:
    for spec in label_specs:
        extra = set(spec) - {"pairs", "includeSelectors", "includeTemplates"}
        if extra or spec.get("includeSelectors"):
            raise RenderError("labels: only pairs/includeTemplates with includeSelectors false are supported")
        pairs = {k: str(v) for k, v in spec.get("pairs", {}).items()}
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            if spec.get("includeTemplates") and doc.get("kind") in WORKLOADS_WITH_TEMPLATE:
                tmpl = doc["spec"].setdefault("template", {}).setdefault("metadata", {})
                tmpl.setdefault("labels", {}).update(pairs)


def render(directory: str) -> list[dict]:
    kpath = os.path.join(directory, "kustomization.yaml")
    if not os.path.isfile(kpath):
        raise RenderError(f"{directory}: no kustomization.yaml")
    kust = load_docs(kpath)[0]
    extra = set(kust) - ALLOWED_KEYS
    if extra:
        raise RenderError(f"{kpath}: unsupported keys {sorted(extra)} (extend render.py or use kubectl kustomize)")
    docs: list[dict] = []
    for res in kust.get("resources", []):
        p = os.path.normpath(os.path.join(directory, res))
        docs.extend(render(p) if os.path.isdir(p) else load_docs(p))
    for patch in kust.get("patches", []):
        if set(patch) != {"path"}:
            raise RenderError(f"{kpath}: only `patches: - path: FILE` (strategic merge) is supported")
        for pdoc in load_docs(os.path.join(directory, patch["path"])):
            hits = [i for i, d in enumerate(docs)
                    if d["kind"] == pdoc["kind"] and d["metadata"]["name"] == pdoc["metadata"]["name"]]
            if len(hits) != 1:
                raise RenderError(f"patch {patch['path']}: {len(hits)} targets for {pdoc['kind']}/{pdoc['metadata']['name']}")
            docs[hits[0]] = smp(docs[hits[0]], pdoc)
    if "namespace" in kust:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kust["namespace"]
    apply_labels(docs, kust.get("labels", []))
    apply_images(docs, kust.get("images", []))
    return docs


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        docs = render(argv[1])
    except (RenderError, OSError, KeyError, yaml.YAMLError) as e:
        print(f"render.py: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=True, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
