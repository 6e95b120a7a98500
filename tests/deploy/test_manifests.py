"""Offline checks of deploy/kubernetes: the YAML parses, objects are well formed, probes and
mounts name what exists, and every kvtierd flag the manifests use is one kvtierd knows."""
import os
import pathlib
import re
import subprocess
import tomllib

import pytest
import yaml

ROOT = pathlib.Path(os.environ.get("KVTIER_SOURCE_DIR", pathlib.Path(__file__).parents[2]))
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def documents():
    for path in MANIFESTS:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    yield path.name, doc


def kvtierd_flags():
    kvtierd = os.environ["KVTIER_KVTIERD"]
    out = subprocess.run([kvtierd, "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"--([a-z][a-z0-9-]*)", out))


def test_there_are_manifests():
    names = {p.name for p in MANIFESTS}
    assert {"kvtierd-daemonset.yaml", "etcd-statefulset.yaml", "configmap.yaml"} <= names


@pytest.mark.parametrize("name,doc", list(documents()))
def test_every_object_is_well_formed(name, doc):
    assert doc.get("apiVersion"), name
    assert doc.get("kind"), name
    assert doc.get("metadata", {}).get("name"), name
    if doc["kind"] in ("DaemonSet", "StatefulSet", "Deployment"):
        spec = doc["spec"]
        selector = spec["selector"]["matchLabels"]
        labels = spec["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name}: selector does not match the pods"
        # A StatefulSet's claim templates are volumes of its pods too.
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        check_pod(name, spec["template"]["spec"], claims)
    if doc["kind"] == "Pod":
        check_pod(name, doc["spec"])


def check_pod(name, pod, extra_volumes=frozenset()):
    volumes = {v["name"] for v in pod.get("volumes", [])} | set(extra_volumes)
    for c in pod["containers"]:
        assert c.get("image"), f"{name}: container {c['name']} has no image"
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        for probe in ("livenessProbe", "readinessProbe"):
            if probe in c and "httpGet" in c[probe]:
                port = c[probe]["httpGet"]["port"]
                assert port in ports or isinstance(port, int), f"{name}: {probe} port {port}"
        for m in c.get("volumeMounts", []):
            assert m["name"] in volumes, f"{name}: mount of undeclared volume {m['name']}"


def test_daemonset_probes_the_health_endpoints_and_uses_known_flags():
    flags = kvtierd_flags()
    ds = next(d for _, d in documents() if d["kind"] == "DaemonSet")
    c = ds["spec"]["template"]["spec"]["containers"][0]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for arg in c["args"]:
        assert arg.startswith("--"), arg
        flag = arg[2:].split("=", 1)[0]
        assert flag in flags, f"kvtierd has no --{flag}"


def test_configmap_keys_are_kvtierd_flags():
    flags = kvtierd_flags()
    cm = next(d for _, d in documents() if d["kind"] == "ConfigMap")
    config = tomllib.loads(cm["data"]["kvtierd.toml"])
    assert config, "empty kvtierd.toml"
    for key in config:
        assert key in flags, f"kvtierd.toml: kvtierd has no --{key}"
    # The metrics port the probes use is the one kvtierd is told to serve.
    assert config["metrics-listen"].endswith(":9464")
