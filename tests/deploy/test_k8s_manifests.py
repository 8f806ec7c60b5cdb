"""The Kubernetes manifests of deploy/k8s, checked without a cluster.

Every object is validated against the Kubernetes OpenAPI schemas that the PyPI package
`kubernetes-validate` ships (offline, strict: unknown fields are errors), for the oldest and
the newest Kubernetes version we claim. Then what a schema cannot know: one Deployment per
service of services/, non-root pods with a read-only root and no capabilities, probes and
resources everywhere, each pod mounting only its own API key, Redis passwords only from the
Secret, environment variables the binaries actually read, and the readiness script's logic.
"""

import copy
import os
import pathlib
import re
import socket
import stat
import subprocess
import sys

import pytest
import yaml

from deploy_files import ROOT, gleitzeit_variables_in_sources, service_binaries

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")

K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes release we claim, and the newest the validator knows.
VERSIONS = ["1.29", str(kv.latest_version())]


def manifest_files() -> list[pathlib.Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def objects() -> list[tuple[str, dict]]:
    """(file name, object) for every document of every manifest."""
    found = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in objects() if doc["kind"] == kind]


def deployments() -> dict[str, dict]:
    """Deployments by the binary their container runs."""
    return {d["spec"]["template"]["spec"]["containers"][0]["command"][0]: d for d in of_kind("Deployment")}


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name,obj", objects(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_object_is_valid_against_the_kubernetes_schema(name, obj, version):
    kv.validate(obj, version, strict=True)


def test_the_schema_check_rejects_a_broken_manifest():
    hub = deployments()["central-hub"]
    typo = copy.deepcopy(hub)
    typo["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    wrong_type = copy.deepcopy(hub)
    wrong_type["spec"]["replicas"] = "two"
    for bad in (typo, wrong_type):
        with pytest.raises(kv.ValidationError):
            kv.validate(bad, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_placeholders():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    expected = {p.name for p in manifest_files()} - {"secrets.example.yaml"}
    assert listed == expected
    assert kustomization["namespace"] == "gleitzeit"


def test_one_deployment_per_service_and_a_service_for_the_hub():
    assert sorted(deployments()) == service_binaries()
    (hub_service,) = [s for s in of_kind("Service") if s["metadata"]["name"] == "gleitzeit-hub"]
    hub = deployments()["central-hub"]
    assert hub_service["spec"]["selector"] == hub["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"] for p in hub["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in hub_service["spec"]["ports"]} <= ports
    for d in deployments().values():
        for container in d["spec"]["template"]["spec"]["containers"]:
            url = env_of(container).get("GLEITZEIT_HUB_URL", {}).get("value")
            if url is not None:
                assert url == "https://gleitzeit-hub:8000", "services reach the hub through its Service, over TLS"


@pytest.mark.parametrize("binary", service_binaries())
def test_pods_are_non_root_read_only_and_without_capabilities(binary):
    deployment = deployments()[binary]
    spec = deployment["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"]
        # With a read-only root, what a service writes goes to volumes.
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/data", "/tmp"} <= mounts


@pytest.mark.parametrize("binary", service_binaries())
def test_every_container_has_probes_and_resources(binary):
    for container in deployments()[binary]["spec"]["template"]["spec"]["containers"]:
        assert "readinessProbe" in container and "livenessProbe" in container
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert "memory" in resources["limits"]


@pytest.mark.parametrize("binary", [b for b in service_binaries() if b != "central-hub"])
def test_each_service_mounts_only_its_own_api_key_and_the_ca(binary):
    pod = deployments()[binary]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    assert "GLEITZEIT_API_KEY" not in env, "keys come from a Secret file, never an env value"
    key_file = pathlib.PurePosixPath(env["GLEITZEIT_API_KEY_FILE"]["value"])
    ca_file = pathlib.PurePosixPath(env["GLEITZEIT_TLS_CA"]["value"])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (key_volume,) = [n for n, path in mounts.items() if str(key_file.parent) == path]
    secret = volumes[key_volume]["secret"]
    assert secret["secretName"] == "gleitzeit-api-keys"
    assert secret["items"] == [{"key": binary, "path": key_file.name}]
    placeholders = [s for s in of_kind("Secret") if s["metadata"]["name"] == "gleitzeit-api-keys"]
    assert binary in placeholders[0]["stringData"]
    (ca_volume,) = [n for n, path in mounts.items() if str(ca_file.parent) == path]
    assert volumes[ca_volume]["secret"]["secretName"] == "gleitzeit-hub-tls"


def test_redis_is_a_stateful_set_with_its_password_from_a_secret():
    (redis,) = of_kind("StatefulSet")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "gleitzeit-redis", "key": "password"}
    assert "--requirepass" in container["args"] and "$(REDIS_PASSWORD)" in container["args"]
    assert redis["spec"]["volumeClaimTemplates"], "data on a persistent volume"
    # Everyone who talks to Redis puts the Secret's password into its URL, never a literal.
    for d in deployments().values():
        for c in d["spec"]["template"]["spec"]["containers"]:
            names = list(env_of(c))
            for name, e in env_of(c).items():
                if name.endswith("REDIS_URL"):
                    assert e["value"].startswith("redis://:$(REDIS_PASSWORD)@gleitzeit-redis:")
                    assert names.index("REDIS_PASSWORD") < names.index(name), "defined before use"
                    assert env_of(c)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "gleitzeit-redis"


def test_every_gleitzeit_variable_is_one_the_binaries_read():
    known = gleitzeit_variables_in_sources()
    used = set(re.findall(r"GLEITZEIT_[A-Z0-9_]+", "".join(p.read_text() for p in manifest_files())))
    assert used and used <= known, f"unknown: {sorted(used - known)}"


@pytest.mark.parametrize("host,health,ready", [("me", "healthy", 0), ("me", "unhealthy", 1), ("other", "healthy", 1)])
def test_the_readiness_script_asks_the_hub_for_this_pods_component(tmp_path, host, health, ready):
    (probe,) = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == "gleitzeit-probe"]
    script = tmp_path / "registered.py"
    script.write_text(probe["data"]["registered.py"])
    # A stand-in `gz` printing what `gz status --json` prints.
    me = socket.gethostname() if host == "me" else "some-other-pod"
    fake = tmp_path / "gz"
    doc = {"components": [{"component_id": "x", "host": me, "health": health}]}
    fake.write_text(f"#!{sys.executable}\nimport json\nprint(json.dumps({doc!r}))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert subprocess.run([sys.executable, str(script)], env=env, timeout=30).returncode == ready
    for d in deployments().values():
        for c in d["spec"]["template"]["spec"]["containers"]:
            probe_cmd = c["readinessProbe"].get("exec", {}).get("command")
            if probe_cmd:
                assert probe_cmd == ["python3", "/etc/gleitzeit/probe/registered.py"]
