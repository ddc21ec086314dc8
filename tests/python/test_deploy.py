"""The deployment files (Dockerfile, deploy/k8s) checked without a container engine or a cluster.

- Every manifest under deploy/k8s validates against the JSON schemas of the Kubernetes version
  pinned in deploy/validate.sh, in strict mode (unknown fields are errors), with the network
  shut off (the schemas ship inside the kubernetes-validate package). A kind without a schema
  is an error here, where the kubernetes-validate command only warns.
- The manifests keep their promises: probes on /health at the container's port, which is the
  port `moat serve` is told to use and the Service's target; non-root pods with no
  capabilities and read-only root filesystems; a grace period longer than the preStop pause
  plus moat's drain; resources set; a server on 0.0.0.0 either has a key before it starts or
  runs `--insecure` behind a NetworkPolicy that admits only the gateway.
- The fleet and its gateway: the fleet is a StatefulSet whose serviceName is the headless
  Service, with a claim per pod for /data; the gateway loads no model, mounts its moat.toml
  from its ConfigMap, and that moat.toml lists exactly the StatefulSet's pods (from its
  replica count and serviceName) as the replicas of an upstream target, with the fleet's
  model, health checks and a cache.
- The Dockerfile: multi-stage, tags pinned, the runtime user non-root and the one the
  manifests run as, and hadolint passes. The runtime stage installs the Debian packages that
  provide every library a release `moat` links against (ldd and dpkg on this machine).
- With the real binary: every moat command line in the manifests and the Dockerfile parses,
  and a pod is played out on loopback: the init container's script pulls the model into a
  fresh MOAT_HOME (and skips the pull the second time), the first-key script creates one key
  (and leaves the keys alone the second time), the server runs with the workload's arguments
  and the ConfigMap's moat.toml until /health is 200, the image's HEALTHCHECK command passes,
  and SIGTERM ends it cleanly within the grace period. The gateway, with no model, is healthy
  at once, lists its alias and asks for the key its init container made.

The binary is ``$MOAT_BIN``, else ``$CARGO_TARGET_DIR/release/moat``, else
``target/release/moat``. With ``MOAT_TEST_MODELS`` unset the tests that need the binary or a
model skip, saying why; with it set, a missing binary or model file is a failure.

Run:
    pip install -r tests/python/requirements.txt
    python -m pytest tests/python/test_deploy.py -q
"""

import copy
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

try:
    from kubernetes_validate import utils as kv
except ImportError:  # a venv made before the package joined requirements.txt
    kv = None

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = REPO_ROOT / "Dockerfile"
MODELS_DIR = os.environ.get("MOAT_TEST_MODELS")
SMOLLM2_FILE = "smollm2-135m-instruct-q4_1.gguf"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
STARTUP_TIMEOUT = 180


# ----------------------------------------------------------------------------
# reading the files
# ----------------------------------------------------------------------------


def kubernetes_version() -> str:
    """The version pinned in deploy/validate.sh, so the script and this test agree."""
    text = (DEPLOY / "validate.sh").read_text()
    match = re.search(r"^KUBERNETES_VERSION=([0-9]+\.[0-9]+\.[0-9]+)$", text, re.MULTILINE)
    assert match, "deploy/validate.sh does not pin KUBERNETES_VERSION=X.Y.Z"
    return match.group(1)


def manifest_files() -> list[Path]:
    files = sorted(K8S.rglob("*.yaml"))
    assert files, f"no manifests under {K8S}"
    return files


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last,
    and so would the schema check; kubectl's strict decoding rejects it)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def documents(path: Path) -> list[dict]:
    with path.open() as f:
        docs = [doc for doc in yaml.load_all(f, Loader=UniqueKeyLoader) if doc is not None]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a YAML document that is not a mapping"
    return docs


def all_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in manifest_files() for doc in documents(path)]


def of_kind(kind: str) -> list[tuple[Path, dict]]:
    return [(path, doc) for path, doc in all_documents() if doc.get("kind") == kind]


# The single server, the fleet (a StatefulSet) and the gateway, by name.
WORKLOADS = ("moat", "moat-fleet", "moat-gateway")


def workloads() -> list[tuple[Path, dict]]:
    found = [(p, d) for p, d in all_documents() if d["kind"] in ("Deployment", "StatefulSet")]
    assert sorted(d["metadata"]["name"] for _, d in found) == sorted(WORKLOADS)
    return found


def workload(name: str) -> tuple[Path, dict]:
    (found,) = [(p, d) for p, d in workloads() if d["metadata"]["name"] == name]
    return found


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def selects(match_labels: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in match_labels.items())


def serves_a_model(deployment: dict) -> bool:
    """A model on the command line (the gateway names none: its aliases say what it serves)."""
    args = server_container(deployment)["args"]
    return len(args) > 1 and not args[1].startswith("-")


def all_containers(deployment: dict) -> list[dict]:
    spec = pod_spec(deployment)
    return spec.get("initContainers", []) + spec["containers"]


def config_map_for(deployment: dict) -> dict:
    """The ConfigMap that the workload's configMapKeyRefs and volumes name (exactly one)."""
    names = {
        env["valueFrom"]["configMapKeyRef"]["name"]
        for container in all_containers(deployment)
        for env in container.get("env", [])
        if "configMapKeyRef" in env.get("valueFrom", {})
    } | {v["configMap"]["name"] for v in pod_spec(deployment)["volumes"] if "configMap" in v}
    assert len(names) == 1, f"expected one ConfigMap behind the env and volumes, got {names}"
    (name,) = names
    found = [doc for _, doc in of_kind("ConfigMap") if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"ConfigMap {name} is not among the manifests"
    return found[0]


def container_env(container: dict, config_map: dict) -> dict[str, str]:
    """The container's environment as Kubernetes would set it (values and ConfigMap keys)."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["configMapKeyRef"]
            assert ref["name"] == config_map["metadata"]["name"]
            env[item["name"]] = config_map["data"][ref["key"]]
    return env


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def server_container(deployment: dict) -> dict:
    (container,) = pod_spec(deployment)["containers"]
    return container


def flag_value(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"expected {flag} once in {args}"
    return args[args.index(flag) + 1]


def container_port(container: dict) -> int:
    (port,) = container["ports"]
    assert port["name"] == "http"
    return port["containerPort"]


def resolve_port(container: dict, port) -> int:
    """A probe's or Service's port (a number or a port name) as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return named[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, rest) pairs, with line continuations joined and comments dropped."""
    instructions, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_stages() -> list[dict]:
    """Each stage: its base image (global ARG defaults substituted), name and instructions."""
    global_args, stages = {}, []
    for keyword, rest in dockerfile_instructions():
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            global_args[name] = default.strip('"')
        elif keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"image": image, "name": name, "instructions": []})
        else:
            assert stages or keyword == "ARG", f"{keyword} before the first FROM"
            if stages:
                stages[-1]["instructions"].append((keyword, rest))
    return stages


def stage_values(stage: dict, keyword: str) -> list[str]:
    return [rest for kw, rest in stage["instructions"] if kw == keyword]


def exec_form(text: str) -> list[str]:
    value = yaml.safe_load(text)  # a JSON array is valid YAML
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


# ----------------------------------------------------------------------------
# schema validation, offline
# ----------------------------------------------------------------------------


def require_kubernetes_validate():
    if kv is None:
        pytest.fail(
            "kubernetes-validate is not installed in this Python: "
            "pip install -r tests/python/requirements.txt"
        )


def schema_errors(doc: dict, version: str) -> list[str]:
    """Strict validation of one resource; a kind or apiVersion without a schema is an error."""
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        return [f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {where}: {e.message}"]
    except kv.SchemaNotFoundError as e:
        return [e.message]
    return []


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during offline validation: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_every_manifest_is_valid_for_the_pinned_kubernetes_version_offline(no_network):
    require_kubernetes_validate()
    version = kubernetes_version()
    errors = []
    for path, doc in all_documents():
        errors += [f"{path.relative_to(REPO_ROOT)}: {e}" for e in schema_errors(doc, version)]
    assert errors == []
    kinds = sorted(doc["kind"] for _, doc in all_documents())
    assert kinds == sorted(
        ["Namespace", "ConfigMap", "ConfigMap", "ConfigMap", "PersistentVolumeClaim",
         "PersistentVolumeClaim", "Deployment", "Deployment", "StatefulSet", "Service",
         "Service", "Service", "Service", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy",
         "PodDisruptionBudget"]
    )


def test_strict_validation_rejects_what_kubernetes_would():
    """The validator used above does fail: an unknown field, a wrong type, an unknown kind."""
    require_kubernetes_validate()
    version = kubernetes_version()
    _, deployment = workload("moat")

    unknown_field = copy.deepcopy(deployment)
    server_container(unknown_field)["readinessProbes"] = {}
    assert any("readinessProbes" in e for e in schema_errors(unknown_field, version))

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    assert schema_errors(wrong_type, version)

    unknown_kind = copy.deepcopy(deployment)
    unknown_kind["apiVersion"] = "apps/v9"
    assert schema_errors(unknown_kind, version)


def test_every_object_is_in_the_moat_namespace():
    for path, doc in all_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "moat", path


# ----------------------------------------------------------------------------
# what the manifests promise
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORKLOADS)
def test_probes_ask_health_on_the_port_moat_listens_on(name):
    path, deployment = workload(name)
    container = server_container(deployment)
    port = container_port(container)
    args = container["args"]
    assert args[0] == "serve", path
    assert int(flag_value(args, "--port")) == port
    # Inside a pod, loopback is unreachable for the kubelet and the Service.
    assert flag_value(args, "--host") == "0.0.0.0"
    for probe in PROBES:
        assert probe in container, f"{path}: no {probe}"
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", f"{path}: {probe}"
        assert resolve_port(container, get["port"]) == port, f"{path}: {probe}"
    # A model loads for a while: the startup probe allows minutes, not seconds (the gateway
    # loads none and is ready at once), and liveness takes longer to give up than a drain
    # lasts.
    startup = container["startupProbe"]
    needed = 300 if serves_a_model(deployment) else 30
    assert startup["periodSeconds"] * startup["failureThreshold"] >= needed
    liveness = container["livenessProbe"]
    drain = int(flag_value(args, "--shutdown-grace"))
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > drain


def test_services_target_the_server_port():
    pods = [doc for _, doc in workloads()]
    services = of_kind("Service")
    assert len(services) == 4
    for path, service in services:
        spec = service["spec"]
        matching = [d for d in pods if selects(spec["selector"], pod_labels(d))]
        assert len(matching) == 1, f"{path}: the selector must pick one workload's pods"
        container = server_container(matching[0])
        (port,) = spec["ports"]
        assert port["port"] == 8080
        assert resolve_port(container, port["targetPort"]) == container_port(container)
        # Plain HTTP with bearer keys: TLS belongs to an Ingress in front, not to a bare port.
        assert spec.get("type", "ClusterIP") == "ClusterIP", path
    headless = [s for _, s in services if s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == ["moat-fleet-nodes"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_pods_run_as_the_image_user_without_privileges(name):
    path, deployment = workload(name)
    spec = pod_spec(deployment)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True, path
    assert pod["runAsUser"] == image_uid() != 0
    assert pod["runAsGroup"] == pod["fsGroup"] == image_gid()
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    for container in all_containers(deployment):
        context = container["securityContext"]
        assert context.get("runAsUser", pod["runAsUser"]) != 0, container["name"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        # With a read-only root, everything moat or pip writes must be a volume.
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/data", "/tmp"} <= mounts, container["name"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_grace_period_outlasts_the_prestop_pause_and_the_drain(name):
    path, deployment = workload(name)
    container = server_container(deployment)
    drain = int(flag_value(container["args"], "--shutdown-grace"))
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    pause = int(pre_stop[1])
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace > pause + drain, f"{path}: {grace} s <= {pause} s + {drain} s"


@pytest.mark.parametrize("name", WORKLOADS)
def test_every_container_has_requests_and_limits(name):
    _, deployment = workload(name)
    for container in all_containers(deployment):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), container["name"]
        assert "memory" in resources["limits"], container["name"]


def test_single_server_keeps_its_data_on_the_claim_and_never_runs_two_pods():
    _, deployment = workload("moat")
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    claims = [doc["metadata"]["name"] for _, doc in of_kind("PersistentVolumeClaim")]
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] in claims


# ----------------------------------------------------------------------------
# the fleet and its gateway
# ----------------------------------------------------------------------------


def named(kind: str, name: str) -> dict:
    (found,) = [doc for _, doc in of_kind(kind) if doc["metadata"]["name"] == name]
    return found


def fleet_pod_urls() -> list[str]:
    """The base URL of every fleet pod, by the stable name its StatefulSet gives it."""
    _, fleet = workload("moat-fleet")
    spec = fleet["spec"]
    namespace = fleet["metadata"]["namespace"]
    port = container_port(server_container(fleet))
    return [
        f"http://{fleet['metadata']['name']}-{i}.{spec['serviceName']}.{namespace}"
        f".svc.cluster.local:{port}/v1"
        for i in range(spec["replicas"])
    ]


def gateway_toml() -> dict:
    _, gateway = workload("moat-gateway")
    return tomllib.loads(config_map_for(gateway)["data"]["moat.toml"])


def test_fleet_is_a_stateful_set_named_through_the_headless_service():
    _, fleet = workload("moat-fleet")
    assert fleet["kind"] == "StatefulSet"
    spec = fleet["spec"]
    service = named("Service", spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "stable pod names need a headless Service"
    assert selects(service["spec"]["selector"], pod_labels(fleet))
    assert selects(spec["selector"]["matchLabels"], pod_labels(fleet))
    # Pods load independently; ordered start would make pod 2 wait for pods 0 and 1 to load.
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["replicas"] >= 2
    (pdb,) = [doc for _, doc in of_kind("PodDisruptionBudget")]
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(fleet))
    assert pdb["spec"]["maxUnavailable"] == 1


def test_fleet_pods_keep_their_store_on_a_claim_of_their_own():
    _, fleet = workload("moat-fleet")
    (template,) = fleet["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "data"
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storage" in template["spec"]["resources"]["requests"]
    # The template is the data volume: no pod volume of the same name shadows it.
    assert "data" not in {v["name"] for v in pod_spec(fleet)["volumes"]}
    for container in all_containers(fleet):
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["data"] == "/data", container["name"]


def test_a_server_on_every_address_has_a_key_or_only_the_gateway_reaches_it():
    """moat refuses a non-loopback --host while no key exists, unless --insecure."""
    for name in WORKLOADS:
        _, deployment = workload(name)
        args = server_container(deployment)["args"]
        assert flag_value(args, "--host") == "0.0.0.0"
        inits = [c["name"] for c in pod_spec(deployment).get("initContainers", [])]
        if name == "moat-fleet":
            assert "--insecure" in args, "the fleet nodes run without keys behind the gateway"
            assert "first-key" not in inits
        else:
            assert "--insecure" not in args, name
            assert "first-key" in inits, f"{name}: no key before `moat serve` starts"


def network_policies_over(labels: dict) -> list[dict]:
    return [doc for _, doc in of_kind("NetworkPolicy")
            if selects(doc["spec"]["podSelector"].get("matchLabels", {}), labels)]


def test_only_the_gateway_reaches_the_fleet():
    _, fleet = workload("moat-fleet")
    _, gateway = workload("moat-gateway")
    _, single = workload("moat")
    port = container_port(server_container(fleet))
    policies = network_policies_over(pod_labels(fleet))
    assert policies, "no NetworkPolicy selects the keyless fleet: the namespace reaches it"
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress", []):
            assert [p["port"] for p in rule["ports"]] == [port]
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, f"{policy['metadata']['name']}: {peer}"
                match = peer["podSelector"].get("matchLabels", {})
                assert selects(match, pod_labels(gateway))
                assert not selects(match, pod_labels(fleet))
                assert not selects(match, pod_labels(single))


def test_every_workload_is_behind_a_network_policy():
    for name in WORKLOADS:
        _, deployment = workload(name)
        assert network_policies_over(pod_labels(deployment)), name


def test_gateway_loads_no_model_and_reads_its_config_map():
    _, gateway = workload("moat-gateway")
    spec = pod_spec(gateway)
    assert not serves_a_model(gateway)
    assert "pull-model" not in [c["name"] for c in spec.get("initContainers", [])]
    container = server_container(gateway)
    # The config file is the ConfigMap's moat.toml, mounted where --config points.
    config_path = Path(flag_value(container["args"], "--config"))
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert mount["readOnly"] is True and Path(mount["mountPath"]) == config_path.parent
    (volume,) = [v for v in spec["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == config_map_for(gateway)["metadata"]["name"]
    assert volume["configMap"]["items"] == [{"key": "moat.toml", "path": config_path.name}]
    # No model volume: the data claim holds moat.db only, and is small.
    (data,) = [v for v in spec["volumes"] if v["name"] == "data"]
    claim = named("PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["resources"]["requests"]["storage"] in ("1Gi", "512Mi", "256Mi")
    # One writer of moat.db (keys, usage, audit).
    assert gateway["spec"]["replicas"] == 1
    assert gateway["spec"]["strategy"]["type"] == "Recreate"
    # Small requests: no engine.
    _, fleet = workload("moat-fleet")
    for resource in ("cpu", "memory"):
        ours = container["resources"]["requests"][resource]
        theirs = server_container(fleet)["resources"]["requests"][resource]
        assert quantity(ours) * 4 <= quantity(theirs), resource
    # Its Service is the only one over its pods, for clients.
    services = [doc for _, doc in of_kind("Service")
                if selects(doc["spec"]["selector"], pod_labels(gateway))]
    assert [s["metadata"]["name"] for s in services] == ["moat-gateway"]


def quantity(text: str) -> float:
    """A Kubernetes quantity such as 250m, 2, 256Mi or 2Gi as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_gateway_lists_exactly_the_fleet_pods_as_replicas():
    config = gateway_toml()
    urls = fleet_pod_urls()
    fleet_targets = [
        target
        for alias in config["aliases"].values()
        for target in alias.get("targets", [])
        if target["type"] == "upstream"
        and any(".moat-fleet-nodes." in u for u in target.get("replicas", [target.get("url")]))
    ]
    assert fleet_targets, "no upstream target over the fleet"
    _, fleet = workload("moat-fleet")
    fleet_model = config_map_for(fleet)["data"]["MOAT_MODEL"]
    for target in fleet_targets:
        assert target["replicas"] == urls
        assert target["model"] == fleet_model, "the gateway asks for a model the fleet lacks"
        assert "api_key_env" not in target, "the fleet nodes run without keys"
        assert not target.get("external", False)


def test_gateway_checks_health_within_the_fleet_drain_and_caches():
    config = gateway_toml()
    _, fleet = workload("moat-fleet")
    container = server_container(fleet)
    pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    drain = int(flag_value(container["args"], "--shutdown-grace"))
    interval = config["routing"]["health_interval_secs"]
    # A draining node must leave the rotation before it stops answering.
    assert 0 < interval < pause + drain
    assert config["cache"]["max_bytes"] > 0
    _, gateway = workload("moat-gateway")
    limit = quantity(server_container(gateway)["resources"]["limits"]["memory"])
    assert config["cache"]["max_bytes"] * 4 <= limit, "the cache crowds the memory limit"
    for name, alias in config["aliases"].items():
        if alias.get("private"):
            assert not any(t.get("external") for t in alias["targets"]), name


# ----------------------------------------------------------------------------
# the Dockerfile
# ----------------------------------------------------------------------------


def final_stage() -> dict:
    return dockerfile_stages()[-1]


def image_user() -> tuple[int, int]:
    (user,) = stage_values(final_stage(), "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), "USER must be numeric (uid:gid) for runAsNonRoot"
    return int(uid), int(gid)


def image_uid() -> int:
    return image_user()[0]


def image_gid() -> int:
    return image_user()[1]


def test_dockerfile_is_multi_stage_with_pinned_bases():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    assert [s["name"] for s in stages] == ["builder", "runtime"]
    for stage in stages:
        image = stage["image"]
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"unpinned base image {image}"
    assert re.fullmatch(r"rust:\d+\.\d+\.\d+-\w+", stages[0]["image"])
    assert stages[1]["image"].startswith("debian:") and stages[1]["image"].endswith("-slim")
    # The same Debian release on both sides, so the binary finds its glibc.
    assert stages[0]["image"].split("-")[-1] == stages[1]["image"].split(":")[1].split("-")[0]


def test_dockerfile_builds_moat_with_cargo_caches():
    (build,) = [r for r in stage_values(dockerfile_stages()[0], "RUN") if "cargo build" in r]
    assert "cargo build --release -p moat-cli --locked" in build
    for cache in ("/usr/local/cargo/registry", "/usr/local/cargo/git", "/src/target"):
        assert f"--mount=type=cache,target={cache}" in build
    assert DOCKERFILE.read_text().startswith("# syntax=docker/dockerfile:1")


def test_dockerfile_runtime_stage():
    stage = final_stage()
    assert image_uid() != 0 and image_gid() != 0
    assert any("useradd" in r and f"--uid {image_uid()}" in r for r in stage_values(stage, "RUN"))
    env = " ".join(stage_values(stage, "ENV"))
    assert "MOAT_HOME=/data" in env
    assert exec_form(stage_values(stage, "VOLUME")[0]) == ["/data"]
    assert stage_values(stage, "EXPOSE") == ["8080"]
    assert stage_values(stage, "STOPSIGNAL") == ["SIGTERM"]
    assert exec_form(stage_values(stage, "ENTRYPOINT")[0]) == ["moat"]
    assert exec_form(stage_values(stage, "CMD")[0]) == [
        "serve", "--host", "0.0.0.0", "--port", "8080"]
    (healthcheck,) = stage_values(stage, "HEALTHCHECK")
    assert "MOAT_HEALTH_URL" in healthcheck
    assert "MOAT_HEALTH_URL=http://127.0.0.1:8080/health" in env
    # The tool the check runs is installed in this stage.
    assert "python3" in " ".join(stage_values(stage, "RUN"))
    # The builder's toolchain stays out of the runtime.
    installed = runtime_packages()
    assert not installed & {"cmake", "clang", "libclang-dev", "build-essential", "g++", "gcc"}


def runtime_packages() -> set[str]:
    words = set()
    for run in stage_values(final_stage(), "RUN"):
        if "apt-get install" in run:
            install = run.split("apt-get install", 1)[1].split("&&")[0]
            words |= {w for w in install.split() if not w.startswith("-")}
    assert words, "the runtime stage installs no packages"
    return words


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.exists():
        pytest.fail(
            "hadolint is not installed in this Python: "
            "pip install -r tests/python/requirements.txt"
        )
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ----------------------------------------------------------------------------
# against the real binary
# ----------------------------------------------------------------------------


def moat_binary() -> Path:
    if not MODELS_DIR:
        pytest.skip(
            "MOAT_TEST_MODELS is unset: the moat binary may not be built "
            "(scripts/test.sh sets it)"
        )
    explicit = os.environ.get("MOAT_BIN")
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        path = target / "release" / "moat"
    assert path.is_file(), f"no moat binary at {path}: run `cargo build --release` or set MOAT_BIN"
    return path


def test_runtime_stage_installs_what_the_binary_links_against():
    binary = moat_binary()
    if not shutil.which("ldd") or not shutil.which("dpkg"):
        pytest.skip("needs ldd and dpkg (a Debian machine) to map libraries to packages")
    ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libraries = re.findall(r"=>\s+(/\S+)", ldd)
    assert libraries, ldd
    packages = set()
    for library in libraries:
        owner = subprocess.run(["dpkg", "-S", library], capture_output=True, text=True)
        if owner.returncode != 0:  # /lib is a link to /usr/lib on current Debian
            owner = subprocess.run(["dpkg", "-S", "/usr" + library], capture_output=True, text=True)
        assert owner.returncode == 0, f"no Debian package owns {library}"
        packages.add(owner.stdout.split(":")[0])
    # libc6 and libgcc-s1 are essential: every Debian image has them.
    missing = packages - {"libc6", "libgcc-s1"} - runtime_packages()
    assert missing == set(), f"the runtime stage lacks {missing} (ldd: {libraries})"


def command_lines() -> list[list[str]]:
    """Every moat command line the manifests and the Dockerfile run, $(VAR)s expanded."""
    lines = []
    for _, deployment in workloads():
        config_map = config_map_for(deployment)
        for container in all_containers(deployment):
            env = container_env(container, config_map)
            if "args" in container:
                lines.append([expand(a, env) for a in container["args"]])
            else:  # the init container's script: each `moat ...` call in it
                for script_line in container["command"][2].splitlines():
                    call = re.search(r"\bmoat (.*?)(?:\s*(?:>|;|\)|\bthen\b)|$)", script_line)
                    if call:
                        text = call.group(1)
                        for name, value in env.items():
                            text = text.replace(f'"${name}"', shlex.quote(value))
                        lines.append(shlex.split(text))
    lines.append(exec_form(stage_values(final_stage(), "CMD")[0]))
    return lines


def test_every_command_line_parses():
    """clap checks flags and their values up to `--help`, which then prints and exits 0."""
    binary = moat_binary()
    lines = command_lines()
    assert len(lines) >= 9
    for line in lines:
        assert line, "an empty command line"
        result = subprocess.run([str(binary), *line, "--help"], capture_output=True, text=True,
                                timeout=30, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"moat {' '.join(line)}: {result.stderr}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def healthcheck_command() -> list[str]:
    (healthcheck,) = stage_values(final_stage(), "HEALTHCHECK")
    return exec_form(healthcheck.split("CMD", 1)[1].strip())


def run_init_script(script: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def api_get(url: str, key: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def play_init_containers(deployment: dict, config_map: dict, base_env: dict,
                         model_file: Path) -> None:
    """Each init container's script twice, as a first start and a restart would run it."""
    home = Path(base_env["MOAT_HOME"])
    for init in pod_spec(deployment)["initContainers"]:
        assert init["command"][:2] == ["sh", "-c"], init["name"]
        script = init["command"][2]
        init_env = {**base_env, **container_env(init, config_map)}
        if init["name"] == "pull-model":
            init_env["MOAT_PULL_SOURCE"] = str(model_file)
        first = run_init_script(script, init_env)
        assert first.returncode == 0, f"{init['name']}: {first.stderr}"
        second = run_init_script(script, init_env)
        assert second.returncode == 0, f"{init['name']}: {second.stderr}"
        if init["name"] == "pull-model":
            assert "is in the store" not in first.stdout
            assert f"{config_map['data']['MOAT_MODEL']} is in the store" in second.stdout
        elif init["name"] == "first-key":
            key_file = home / "first-key.json"
            assert (key_file.stat().st_mode & 0o777) == 0o600, "the secret is readable by others"
            secret = json.loads(key_file.read_text())["secret"]
            assert secret and secret not in first.stdout + first.stderr, "the secret in the log"
            assert "the gateway has API keys" in second.stdout
            keys = subprocess.run([str(moat_binary()), "keys", "ls", "--json"], env=base_env,
                                  capture_output=True, text=True, check=True).stdout
            assert len(json.loads(keys)) == 1, "the second start made another key"
        else:
            pytest.fail(f"no play-out for the init container {init['name']}")


@pytest.mark.parametrize("name", WORKLOADS)
def test_a_pod_played_out_on_loopback(name, tmp_path):
    """The init containers' scripts and the server's arguments, run as the pod would run them,
    with three substitutions a container would not need: the model comes from the local test
    file instead of the network, the server binds 127.0.0.1 on a free port, and moat.toml is
    a temporary copy of the ConfigMap's."""
    binary = moat_binary()
    model_file = Path(MODELS_DIR) / SMOLLM2_FILE
    assert model_file.is_file(), f"MOAT_TEST_MODELS is set but {model_file} is missing"
    _, deployment = workload(name)
    config_map = config_map_for(deployment)
    home = tmp_path / "data"
    home.mkdir()
    base_env = {
        "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "MOAT_HOME": str(home),  # the image's ENV
    }
    play_init_containers(deployment, config_map, base_env, model_file)

    container = server_container(deployment)
    config = tmp_path / "moat.toml"
    config.write_text(config_map["data"]["moat.toml"])
    port = free_port()
    args = [expand(a, container_env(container, config_map)) for a in container["args"]]
    replace = {"--host": "127.0.0.1", "--port": str(port), "--config": str(config)}
    args = [replace.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
    url = f"http://127.0.0.1:{port}/health"
    log = tmp_path / "serve.log"  # a file, not a pipe: a full pipe would stall the server
    with log.open("w") as out:
        server = subprocess.Popen([str(binary), *args], env=base_env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while health_status(url) != 200:
            assert server.poll() is None, f"moat serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, "moat serve never became healthy"
            time.sleep(0.5)
        check = subprocess.run(healthcheck_command(), env={**base_env, "MOAT_HEALTH_URL": url},
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        if name == "moat-gateway":
            # Its aliases are what it serves, behind the key its init container made.
            models = f"http://127.0.0.1:{port}/v1/models"
            assert api_get(models)[0] == 401
            key = json.loads((home / "first-key.json").read_text())["secret"]
            status, body = api_get(models, key)
            assert status == 200, body
            listed = {m["id"]: m.get("type") for m in json.loads(body)["data"]}
            assert listed == {"chat": "alias"}, listed

        server.send_signal(signal.SIGTERM)
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert server.wait(timeout=grace) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    output = log.read_text()
    assert "stopped" in output, output
    if serves_a_model(deployment):
        assert "license" in output, output
    else:
        assert "gateway aliases: chat" in output, output
    after = subprocess.run(healthcheck_command(), env={**base_env, "MOAT_HEALTH_URL": url},
                           capture_output=True, text=True, timeout=30)
    assert after.returncode != 0, "the HEALTHCHECK passed with no server"
