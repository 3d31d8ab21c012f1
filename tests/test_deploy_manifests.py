"""Offline checks of the deployment files: deploy/Dockerfile, deploy/compose, deploy/k8s.

No container engine and no cluster are needed:

* compose: ``docker-compose config`` (Debian's docker-compose, or the ``docker compose`` plugin)
  must accept the file; the normalised output is then checked for services, ports and wiring.
  Skipped, saying so, when neither binary is installed.
* Kubernetes: each kustomization is built with ``kubectl kustomize`` (or ``kustomize build``)
  when one is on PATH, else with ``mini_kustomize`` below, a subset of kustomize covering exactly
  the fields deploy/k8s uses.  When a binary is there, both builds must agree, which keeps the
  subset honest.  Every built object is validated offline against the Kubernetes OpenAPI schemas
  (kubernetes-validate, strict), and RBAC, probes, replicas, resources and security contexts
  are asserted.
* Dockerfile: base image, non-root user, no ENTRYPOINT, and every COPY source present in the
  build context after .dockerignore; the compose health-check helper is run against a real
  gRPC health server, plaintext, TLS and mTLS.
* TLS on every hop: the compose certs job's own command is run and every file a service names
  checked; each Kubernetes TLS variable is a key of the Secret its pod mounts, whose Certificate
  has the component's CN and names. Both stacks are then run as local processes (no engine, no
  cluster: paths and names mapped) until every healthcheck passes and the example is Ready.
"""
from __future__ import annotations

import copy
import fnmatch
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
COMPOSE_INSECURE = COMPOSE_DIR / "docker-compose.insecure.yml"
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
HEALTH_CHECK = ROOT / "deploy" / "docker" / "grpc-health-check"

KUBEP4_SERVICES = {  # compose service -> (module under services/, OTEL service name)
    "admission": ("admission", "kubep4-admission"),
    "apiserver": ("apiserver", "kubep4-apiserver"),
    "controller": ("controller", "kubep4-controller"),
    "builder": ("builder", "kubep4-builder"),
    "node-agent-1": ("node_agent", "kubep4-node-agent"),
    "node-agent-2": ("node_agent", "kubep4-node-agent"),
}
SWITCHES = {"switch-1", "switch-2"}
JOBS = {"certs", "etcd-auth"}  # one-shot: the development PKI, etcd auth
SWITCH_TLS = ["--grpc-server-ssl", "--grpc-server-cacert", "--grpc-server-cert", "--grpc-server-key",
              "--grpc-server-with-client-auth"]


@functools.lru_cache(maxsize=None)
def _flag_envs(module: str) -> frozenset[str]:
    """The KUBEP4_* environment variables the service reads: the ``[env ...]`` of each of its flags,
    from its own --help (so a variable of a flag group it does not add is not one of them)."""
    proc = subprocess.run([sys.executable, "-m", f"services.{module}", "--help"], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "1000"})
    assert proc.returncode == 0, proc.stderr
    return frozenset(re.findall(r"env (KUBEP4_[A-Z0-9_]+)", proc.stdout))


# a service without a console script of its own yet (pyproject's [project.scripts]): run as a module
MODULE_COMMANDS = {"builder": ["python", "-m", "services.builder"]}


def _hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


# =============================================================================== docker compose

def _compose_cmd() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], check=False, capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def _clean_env() -> dict[str, str]:
    """The caller's environment minus anything the compose file interpolates."""
    prefixes = ("KUBEP4_", "OTEL_", "SWITCH_", "COMPOSE_", "ETCD_", "JAEGER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def compose_config(*extra: str) -> dict:
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed "
                    "(apt-get install -y docker-compose); the compose file was not checked")
    proc = subprocess.run([*cmd, "-f", str(COMPOSE_FILE), *extra, "config"], cwd=COMPOSE_DIR, check=False,
                          env=_clean_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)} config failed:\n{proc.stderr}"
    assert "is not set" not in proc.stderr, proc.stderr  # every ${VAR} has a default
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    return compose_config()


def _env(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _published(svc: dict) -> dict[int, int]:
    """target port -> published port."""
    out = {}
    for p in svc.get("ports", []):
        if isinstance(p, str):
            published, _, target = p.rpartition(":")
            out[int(target)] = int(published.rpartition(":")[2])
        else:
            out[int(p["target"])] = int(p["published"])
    return out


def _depends(svc: dict) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: v.get("condition", "service_started") for k, v in deps.items()}


def test_compose_services(compose):
    assert set(compose["services"]) == {"etcd", "jaeger", *KUBEP4_SERVICES, *SWITCHES, *JOBS}


def test_compose_builds_one_image_from_deploy_dockerfile(compose):
    images = set()
    for name in [*KUBEP4_SERVICES, *JOBS]:
        svc = compose["services"][name]
        assert Path(svc["build"]["context"]).resolve() == ROOT, name
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile", name
        images.add(svc["image"])
        assert svc.get("read_only") is True and "ALL" in svc.get("cap_drop", []), name
    assert images == {"kubep4:dev"}


def test_compose_etcd_keeps_state_in_a_named_volume(compose):
    etcd = compose["services"]["etcd"]
    assert re.fullmatch(r"(quay\.io/coreos|gcr\.io/etcd-development)/etcd:v3\.5\.\d+", etcd["image"])
    argv = _argv(etcd["command"])
    data_dir = next(a.split("=", 1)[1] for a in argv if a.startswith("--data-dir="))
    mounts = {}
    for v in etcd["volumes"]:
        if isinstance(v, str):
            source, target = v.split(":")[:2]
        else:
            source, target = v["source"], v["target"]
        mounts[target] = source
    assert data_dir in mounts and mounts[data_dir] in compose["volumes"]
    assert "--listen-client-urls=https://0.0.0.0:2379" in argv
    assert etcd["healthcheck"]["test"][:2] == ["CMD", "etcdctl"]


def test_compose_jaeger(compose):
    jaeger = compose["services"]["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert _env(jaeger)["COLLECTOR_OTLP_ENABLED"] == "true"
    assert _published(jaeger) == {16686: 16686, 4317: 4317}


def test_compose_apiserver_wiring(compose):
    services = compose["services"]
    api = services["apiserver"]
    env = _env(api)
    assert _published(api) == {50051: 50051}
    assert env["KUBEP4_LISTEN"] == "0.0.0.0:50051"
    assert env["KUBEP4_ETCD"] == "https://etcd:2379"
    host, port = _hostport(env["KUBEP4_ADMISSION"])
    assert host == "admission"
    assert _hostport(_env(services["admission"])["KUBEP4_LISTEN"]) == ("0.0.0.0", port)
    assert env["KUBEP4_TOKEN"] == ""
    assert _depends(api) == {"etcd": "service_healthy", "admission": "service_healthy",
                             "etcd-auth": "service_completed_successfully", "jaeger": "service_started"}


def test_compose_controller(compose):
    env = _env(compose["services"]["controller"])
    assert env["KUBEP4_ETCD"] == "https://etcd:2379"
    assert env["KUBEP4_PLACEMENT"] == "builtin"
    assert _depends(compose["services"]["controller"])["etcd"] == "service_healthy"


def test_compose_builder(compose):
    builder = compose["services"]["builder"]
    env = _env(builder)
    assert env["KUBEP4_ETCD"] == "https://etcd:2379"
    assert env["KUBEP4_BUILDER_WORK_DIR"].startswith("/tmp/")  # the tmpfs: the root filesystem is read-only
    assert _argv(builder["command"]) == MODULE_COMMANDS["builder"]
    assert _depends(builder)["etcd"] == "service_healthy"


def test_compose_node_agents_are_wired_to_their_switches(compose):
    from services.node_agent.__main__ import parse_device

    services = compose["services"]
    names = set()
    for i in (1, 2):
        agent = services[f"node-agent-{i}"]
        env = _env(agent)
        names.add(env["KUBEP4_NODE_NAME"])
        assert env["KUBEP4_ETCD"] == "https://etcd:2379"
        devices = [parse_device(spec) for spec in env["KUBEP4_DEVICES"].split()]
        assert [_hostport(d.p4rt_address) for d in devices] == [(f"switch-{i}", 9559)]
        node = env["KUBEP4_NODE_NAME"]  # P4Runtime over mTLS, with the agent's own certificate
        assert (devices[0].tls.ca_file, devices[0].tls.cert_file, devices[0].tls.key_file) == (
            "/pki/ca.pem", f"/pki/agent-{node}.pem", f"/pki/agent-{node}-key.pem")
        assert (devices[0].target, devices[0].arch) == ("bmv2", "v1model")  # examples/basic
        assert _depends(agent)[f"switch-{i}"] == "service_healthy"
        assert _depends(agent)["etcd"] == "service_healthy"
    assert names == {"node-1", "node-2"}


def test_compose_reference_target_is_the_default_switch(compose):
    from kubep4.reftarget.__main__ import parse_device

    for name in SWITCHES:
        sw = compose["services"][name]
        assert sw["image"] == "kubep4:dev"
        argv = _argv(sw["command"])
        assert argv[0] == "kubep4-reftarget"
        assert parse_device(argv[argv.index("--device") + 1]) == (1, "0.0.0.0", 9559)
        assert set(SWITCH_TLS) <= set(argv), name
        assert "9559" in " ".join(sw["healthcheck"]["test"])


def test_compose_bmv2_switches_via_env_file():
    config = compose_config("--env-file", str(COMPOSE_DIR / "bmv2.env"))
    for name in SWITCHES:
        sw = config["services"][name]
        assert sw["image"].startswith("p4lang/behavioral-model")
        argv = _argv(sw["command"])
        assert argv[0] == "simple_switch_grpc" and "--no-p4" in argv
        assert argv[argv.index("--device-id") + 1] == "1"
        assert "--grpc-server-addr=0.0.0.0:9559" in argv
        # the TLS flags are target options: after the "--" that ends simple_switch's own
        assert "--" in argv and all(argv.index(f) > argv.index("--") for f in SWITCH_TLS), argv
        node = name.replace("switch-", "node-")
        assert argv[argv.index("--grpc-server-cert") + 1] == f"/pki/switch-{node}.pem"
    # the rest of the stack is unchanged
    assert _env(config["services"]["node-agent-1"]) == _env(compose_config()["services"]["node-agent-1"])


def test_compose_telemetry_goes_to_jaeger(compose):
    from kubep4.telemetry import SERVICE_NAMES

    for name, (_, otel_name) in KUBEP4_SERVICES.items():
        env = _env(compose["services"][name])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317", name
        assert env["OTEL_SERVICE_NAME"] == otel_name and otel_name in SERVICE_NAMES
        assert "jaeger" in _depends(compose["services"][name])


def _health_needs_a_client_certificate(env: dict[str, str]) -> bool:
    """The apiserver and admission answer health checks on their API port, which asks for a client
    certificate (--client-ca; --tls-ca); the separate health endpoints (--health-listen) never do."""
    if env.get("KUBEP4_HEALTH_LISTEN"):
        return False
    return bool(env.get("KUBEP4_CLIENT_CA") or (env.get("KUBEP4_TLS_CA") and "KUBEP4_ALLOWED_CLIENTS" in env))


def test_compose_healthchecks_probe_the_ports_the_services_listen_on(compose):
    services = compose["services"]
    for name in KUBEP4_SERVICES:
        svc = services[name]
        env = _env(svc)
        listen = env.get("KUBEP4_HEALTH_LISTEN") or env["KUBEP4_LISTEN"]
        test = svc["healthcheck"]["test"]
        assert test[:2] == ["CMD", "grpc-health-check"], name
        assert _hostport(test[-1])[1] == _hostport(listen)[1], name
        # the health endpoints serve TLS: the helper trusts the stack's CA (GRPC_HEALTH_CHECK_CA)
        assert env["GRPC_HEALTH_CHECK_CA"] == "/pki/ca.pem", name
        if _health_needs_a_client_certificate(env):  # health on the mTLS port: show the service's own
            assert (env["GRPC_HEALTH_CHECK_CERT"], env["GRPC_HEALTH_CHECK_KEY"]) == (
                env["KUBEP4_TLS_CERT"], env["KUBEP4_TLS_KEY"]), name
        else:
            assert "GRPC_HEALTH_CHECK_CERT" not in env, name
    for name, svc in services.items():  # a service_healthy dependency needs a healthcheck
        for dep, condition in _depends(svc).items():
            assert dep in services
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy"


def test_compose_env_vars_are_real_flags(compose):
    for name, (module, _) in KUBEP4_SERVICES.items():
        envs = _flag_envs(module)
        for var in _env(compose["services"][name]):
            if var.startswith("KUBEP4_"):
                assert var in envs, f"{name}: {var} is not a flag of services.{module}"


def _mounts(svc: dict) -> dict[str, tuple[str, bool]]:
    """target -> (volume, read-only)."""
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
        else:
            out[v["target"]] = (v["source"], bool(v.get("read_only")))
    return out


def _run_certs_job(compose: dict, tmp_path: Path) -> dict[str, Path]:
    """Run the `certs` job's own command here, its volumes made directories: mount point -> dir."""
    job = compose["services"]["certs"]
    argv = _argv(job["command"])
    assert argv[:3] == ["python", "-m", "kubep4.devpki"]
    dirs = {target: tmp_path / volume for target, (volume, _) in _mounts(job).items()}
    args = []
    for a in argv[3:]:
        if a.startswith("--owner="):  # the job runs as root in its container; here, as whoever runs pytest
            continue
        for target, d in dirs.items():
            a = a.replace(f"={target}", f"={d}")
        args.append(a)
    proc = subprocess.run([sys.executable, "-m", "kubep4.devpki", *args], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dirs


def _pki_files(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if v.startswith("/pki")}


def _cert_names(path: Path) -> tuple[str, set[str]]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {*ext.get_values_for_type(x509.DNSName), *(str(i) for i in ext.get_values_for_type(x509.IPAddress))}
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, names


def test_compose_certs_job_writes_what_every_service_refers_to(compose, tmp_path):
    """The certs job's command, run here: every /pki file a service names exists, every service mounts
    the volume read-only, no service mounts the CA's key, and each certificate holds the CN the
    component is known by and the name it is dialled by."""
    from kubep4 import etcd_auth

    services = compose["services"]
    dirs = _run_certs_job(compose, tmp_path)
    assert set(dirs) == {"/pki", "/pki-ca"}
    pki_volume, ca_volume = _mounts(services["certs"])["/pki"][0], _mounts(services["certs"])["/pki-ca"][0]
    assert {pki_volume, ca_volume} <= set(compose["volumes"])
    assert not (dirs["/pki"] / "ca-key.pem").exists() and (dirs["/pki-ca"] / "ca-key.pem").exists()

    def local(path: str) -> Path:
        top, _, rest = path.lstrip("/").partition("/")
        return dirs["/" + top] / rest

    for name, svc in services.items():
        mounts = _mounts(svc)
        if name == "certs":
            continue
        if ca_volume in {v for v, _ in mounts.values()}:  # the CA key and root: the etcd-auth job only
            assert name == "etcd-auth", name
        refs = dict(_pki_files(_env(svc)))
        argv = _argv(svc.get("command") or [])
        refs.update({f"argv {a}": a.split("=", 1)[-1] for a in argv if a.split("=", 1)[-1].startswith("/pki")})
        refs.update({f"argv {i}": a for i, a in enumerate(argv) if a.startswith("/pki")})
        for var, path in refs.items():
            top = "/" + path.lstrip("/").split("/")[0]
            assert top in mounts and mounts[top][0] == (pki_volume if top == "/pki" else ca_volume), (name, var)
            assert mounts[top][1] is True, f"{name} mounts {top} writable"
            assert local(path).is_file(), f"{name}: {var}={path} is not written by the certs job"
        if name in KUBEP4_SERVICES or name in SWITCHES or name == "etcd":
            assert refs, f"{name} uses no certificate"

    cns = {"apiserver": etcd_auth.APISERVER, "controller": etcd_auth.CONTROLLER, "builder": etcd_auth.BUILDER,
           "node-agent-1": etcd_auth.node_user("node-1"), "node-agent-2": etcd_auth.node_user("node-2")}
    for name, user in cns.items():  # the etcd user of each service is its certificate's CN
        env = _env(services[name])
        assert env["KUBEP4_ETCD"].startswith("https://"), name
        assert _cert_names(local(env["KUBEP4_ETCD_CERT"]))[0] == user, name
        assert env["KUBEP4_ETCD_CA"] == "/pki/ca.pem"
    for name in KUBEP4_SERVICES:  # every health endpoint serves TLS with the service's certificate
        env = _env(services[name])
        assert env["KUBEP4_TLS_CERT"] and env["KUBEP4_TLS_KEY"], name
        assert _cert_names(local(env["KUBEP4_TLS_CERT"]))[1] >= {"127.0.0.1"}, name  # what the healthcheck dials

    def dialled(address: str, cert: str) -> None:
        host = address.split("://")[-1].rpartition(":")[0]
        assert host in _cert_names(local(cert))[1], f"{address}: {cert} is not for {host}"

    api = _env(services["apiserver"])
    adm = _env(services["admission"])
    dialled(api["KUBEP4_ADMISSION"], adm["KUBEP4_TLS_CERT"])
    assert _cert_names(local(api["KUBEP4_TLS_CERT"]))[0] in adm["KUBEP4_ALLOWED_CLIENTS"].split(",")
    assert api["KUBEP4_CLIENT_CA"] == api["KUBEP4_TLS_CA"] == adm["KUBEP4_TLS_CA"] == "/pki/ca.pem"
    assert {"localhost", "127.0.0.1"} <= _cert_names(local(api["KUBEP4_TLS_CERT"]))[1]  # the CLI on the host
    etcd_argv = dict(a.lstrip("-").split("=", 1) for a in _argv(services["etcd"]["command"]) if "=" in a)
    for name in cns:
        dialled(_env(services[name])["KUBEP4_ETCD"], "/pki/" + Path(etcd_argv["cert-file"]).name)
    from services.node_agent.__main__ import parse_device
    for i in (1, 2):
        env = _env(services[f"node-agent-{i}"])
        (device,) = [parse_device(spec) for spec in env["KUBEP4_DEVICES"].split()]
        sw = _argv(services[f"switch-{i}"]["command"])
        dialled(device.p4rt_address, sw[sw.index("--grpc-server-cert") + 1])
        assert sw[sw.index("--grpc-server-cacert") + 1] == device.tls.ca_file == "/pki/ca.pem"
        # the read service: the apiserver dials the node's address with its --tls-ca
        dialled(env["KUBEP4_NODE_ADDRESS"] + ":" + env["KUBEP4_READ_LISTEN"].rpartition(":")[2], env["KUBEP4_TLS_CERT"])
        assert env["KUBEP4_TLS_CA"] == "/pki/ca.pem"


def test_compose_etcd_serves_tls_and_auth_is_turned_on_once_it_is_healthy(compose):
    services = compose["services"]
    argv = _argv(services["etcd"]["command"])
    flags = {a.split("=", 1)[0] for a in argv}
    assert {"--cert-file", "--key-file", "--trusted-ca-file", "--client-cert-auth", "--peer-cert-file",
            "--peer-key-file", "--peer-trusted-ca-file", "--peer-client-cert-auth"} <= flags
    urls = [a.split("=", 1)[1] for a in argv if a.split("=", 1)[0].endswith("-urls") or a.startswith("--initial-cluster=")]
    assert urls and all("http://" not in u for u in urls), urls
    test = services["etcd"]["healthcheck"]["test"]
    assert "--endpoints=https://127.0.0.1:2379" in test and any(t.startswith("--cacert=") for t in test)
    assert _depends(services["etcd"]) == {"certs": "service_completed_successfully"}

    job = services["etcd-auth"]
    args = dict(a.lstrip("-").split("=", 1) for a in _argv(job["command"])[3:] if "=" in a)
    assert "--enable-etcd-auth" in _argv(job["command"])
    assert args["etcd"] == "https://etcd:2379" and args["etcd-cert"] == "/pki-ca/etcd-root.pem"
    nodes = {_env(services[f"node-agent-{i}"])["KUBEP4_NODE_NAME"] for i in (1, 2)}
    assert set(args["nodes"].split(",")) == nodes  # a role for each agent's etcd user
    certs_args = dict(a.lstrip("-").split("=", 1) for a in _argv(services["certs"]["command"])[3:] if "=" in a)
    assert set(certs_args["nodes"].split(",")) == nodes
    assert _depends(job) == {"etcd": "service_healthy"}
    for name in KUBEP4_SERVICES:
        deps = _depends(services[name])
        if "KUBEP4_ETCD" in _env(services[name]):
            assert deps["etcd-auth"] == "service_completed_successfully", name
        else:
            assert deps["certs"] == "service_completed_successfully", name
    for name in SWITCHES:
        assert _depends(services[name])["certs"] == "service_completed_successfully"
    for name in JOBS:
        assert services[name]["restart"] == "no", name
    certs = services["certs"]
    assert certs.get("network_mode") == "none" and set(certs["cap_add"]) <= {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    assert "--owner=10001:10001" in _argv(certs["command"])  # the image's user: the services read their keys


def test_compose_insecure_override_is_plaintext_everywhere():
    config = compose_config("-f", str(COMPOSE_INSECURE))
    services = config["services"]
    assert set(services) == {"etcd", "jaeger", *KUBEP4_SERVICES, *SWITCHES, *JOBS}
    etcd = _argv(services["etcd"]["command"])
    assert "--listen-client-urls=http://0.0.0.0:2379" in etcd
    assert not [a for a in etcd if "https://" in a or a.startswith(("--cert-file", "--client-cert-auth"))]
    assert "--endpoints=http://127.0.0.1:2379" in services["etcd"]["healthcheck"]["test"]
    assert "--enable-etcd-auth" not in _argv(services["etcd-auth"]["command"])
    for name in KUBEP4_SERVICES:
        env = _env(services[name])
        assert not _pki_files(env), (name, _pki_files(env))
        assert env["GRPC_HEALTH_CHECK_CA"] == "", name
        if "KUBEP4_ETCD" in env:
            assert env["KUBEP4_ETCD"] == "etcd:2379", name
    for name in SWITCHES:
        argv = _argv(services[name]["command"])
        assert argv[0] == "kubep4-reftarget" and not set(SWITCH_TLS) & set(argv), argv
    from services.node_agent.__main__ import parse_device
    for i in (1, 2):
        (device,) = [parse_device(s) for s in _env(services[f"node-agent-{i}"])["KUBEP4_DEVICES"].split()]
        assert not device.tls.ca_file and device.p4rt_address == f"switch-{i}:9559"
    # BMv2 and plaintext together: SWITCH_COMMAND alone
    both = compose_config("-f", str(COMPOSE_INSECURE), "--env-file", str(COMPOSE_DIR / "bmv2.env"))
    argv = _argv(both["services"]["switch-1"]["command"])
    assert argv[0] == "simple_switch_grpc" and not set(SWITCH_TLS) & set(argv)


COMPOSE_MODULES = {"admission": "services.admission", "apiserver": "services.apiserver",
                   "controller": "services.controller", "builder": "services.builder",
                   "node-agent-1": "services.node_agent", "switch-1": "kubep4.reftarget"}


@pytest.mark.parametrize("insecure", [False, True], ids=["tls", "insecure-override"])
def test_compose_wiring_runs_without_docker(insecure, tmp_path):
    """No Docker engine here, so the compose file's own settings are run as local processes: the
    certs job's command, etcd with the compose member's certificate and its client-certificate
    auth, the etcd-auth job's command, then admission, the apiserver, the controller, the builder,
    switch-1 and node-agent-1 with their compose environment and command, only the container paths
    (/pki) and names (etcd, admission, switch-1...) mapped to directories and loopback ports.
    Every compose healthcheck must pass, and the admin's certificate must see node-1 registered
    through the apiserver. Not run: Docker itself (images, volumes, users, DNS, depends_on)."""
    from kubep4.client import Client
    from kubep4.etcd_server import EtcdServer, EtcdTLS, free_port

    compose = compose_config(*(["-f", str(COMPOSE_INSECURE)] if insecure else []))
    services = compose["services"]
    dirs = _run_certs_job(compose, tmp_path)

    def local(value: str) -> str:
        for top, d in dirs.items():
            value = value.replace(f"{top}/", f"{d}/")
        return value

    etcd_args = dict(a.lstrip("-").split("=", 1) for a in _argv(services["etcd"]["command"]) if "=" in a)
    assert ("--client-cert-auth" in _argv(services["etcd"]["command"])) is not insecure
    etcd_tls = None if insecure else EtcdTLS(local(etcd_args["cert-file"]), local(etcd_args["key-file"]),
                                             local(etcd_args["trusted-ca-file"]))
    etcd = EtcdServer(data_dir=str(tmp_path / "etcd"), tls=etcd_tls).start()
    procs: list[subprocess.Popen] = []
    try:
        hosts = {"etcd:2379": f"127.0.0.1:{etcd.port}"}
        ports = {}  # (service, container port) -> local port
        for name in COMPOSE_MODULES:
            env = _env(services[name])
            for var in ("KUBEP4_LISTEN", "KUBEP4_HEALTH_LISTEN", "KUBEP4_READ_LISTEN"):
                if var in env:
                    ports[(name, _hostport(env[var])[1])] = free_port()
        ports[("switch-1", 9559)] = free_port()
        hosts.update({f"{svc}:{port}": f"127.0.0.1:{p}" for (svc, port), p in ports.items()})

        def mapped(name: str, value: str) -> str:
            for host, to in hosts.items():
                value = value.replace(host, to)
            value = re.sub(r"0\.0\.0\.0:(\d+)", lambda m: f"127.0.0.1:{ports[(name, int(m.group(1)))]}", value)
            return local(value)

        job = _argv(services["etcd-auth"]["command"])
        proc = subprocess.run([sys.executable, *job[1:3], *(mapped("etcd-auth", a) for a in job[3:])],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr

        for name, module in COMPOSE_MODULES.items():
            svc = services[name]
            env = {k: mapped(name, v) for k, v in _env(svc).items()}
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = ""  # no Jaeger here
            if name == "node-agent-1":
                env["KUBEP4_NODE_ADDRESS"] = "localhost"  # the name the apiserver dials: in its certificate
            argv = [mapped(name, a) for a in _argv(svc["command"])]
            argv = argv[3:] if argv[:2] == ["python", "-m"] else argv[1:]  # the console script's arguments
            log = open(tmp_path / f"{name}.log", "w")
            procs.append(subprocess.Popen([sys.executable, "-m", module, *argv], cwd=ROOT, stdout=log,
                                          stderr=subprocess.STDOUT, env={**_clean_env(), **env}))

        def healthy(name: str) -> bool:
            svc = services[name]
            test = svc["healthcheck"]["test"]
            env = {k: mapped(name, v) for k, v in _env(svc).items() if k.startswith("GRPC_HEALTH_CHECK_")}
            if test[1] == "grpc-health-check":
                *opts, address = test[2:]
                host, port = _hostport(address)
                assert host == "127.0.0.1", name  # inside the container: its own port
                return _health_check(*(mapped(name, a) for a in opts), f"127.0.0.1:{ports[(name, port)]}", env=env) == 0
            port = ports[(name, 9559)]  # the switch's: a TCP connect
            with __import__("socket").socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        import time
        deadline = time.monotonic() + 90
        waiting = set(COMPOSE_MODULES)
        while waiting and time.monotonic() < deadline:
            waiting = {n for n in waiting if not healthy(n)}
            dead = [n for n, p in zip(COMPOSE_MODULES, procs) if p.poll() is not None]
            assert not dead, {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in dead}
            time.sleep(1)
        assert not waiting, {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in waiting}

        api = f"127.0.0.1:{ports[('apiserver', 50051)]}"
        ca = dirs["/pki-ca"]
        creds = {} if insecure else {"ca": str(ca / "ca.pem"), "cert": str(ca / "admin.pem"),
                                     "key": str(ca / "admin-key.pem")}
        with Client(api, **creds) as c:
            me = c.whoami()
            if insecure:
                assert me.authenticated_by == "none"
            else:
                assert (me.user, me.authenticated_by) == ("admin", "certificate") and "system:masters" in me.groups
            # the example, one replica (one switch runs here): through admission (mTLS), etcd as each
            # component's user, the controller, the agent as node:node-1, P4Runtime over mTLS
            from kubep4 import manifest
            pipeline, deployment = manifest.load(str(ROOT / "examples" / "basic" / "deployment.yaml"))
            deployment.spec.replicas = 1
            c.apply(pipeline)
            c.apply(deployment)
            ready = c.wait_ready("basic", timeout=60)
            assert ready.status.ready_replicas == 1
            assert "node-1" in [n.metadata.name for n in c.list("nodes")]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        etcd.cleanup()


# ==================================================================================== Dockerfile

def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        for cand in candidates:
            if fnmatch.fnmatchcase(cand, pat) or (pat.startswith("**/") and (
                    fnmatch.fnmatchcase(cand, pat[3:]) or fnmatch.fnmatchcase(cand.split("/")[-1], pat[3:]))):
                excluded = not negate
                break
    return excluded


def test_dockerfile_shape():
    ins = _dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    args = dict(rest.split("=", 1) for word, rest in ins if word == "ARG" and "=" in rest)
    assert froms and all(f.split()[0].replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"]) == "python:3.11-slim"
                         for f in froms)
    assert not any(word == "ENTRYPOINT" for word, _ in ins), "the command chooses the service"
    final_stage = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [rest for word, rest in final_stage if word == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), "numeric non-root USER"
    assert any(word == "RUN" and "pip install ." in rest for word, rest in ins)
    cmd = next(rest for word, rest in reversed(ins) if word == "CMD")
    assert yaml.safe_load(cmd)[0] in {"kubep4-apiserver", "kubep4-admission", "kubep4-controller",
                                      "kubep4-node-agent", "kubep4-reftarget", "kubep4"}


def test_dockerfile_copies_only_what_the_context_keeps():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = []
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            sources += [s for s in rest.split()[:-1] if not s.startswith("--")]
    assert {"pyproject.toml", "kubep4", "services"} <= set(sources)
    for src in sources:
        matches = [p.relative_to(ROOT).as_posix() for p in ROOT.glob(src)]
        if src.endswith("*"):  # optional (README.md*)
            continue
        assert matches, f"COPY {src}: not in the repository"
        for m in matches:
            assert not _dockerignored(m, patterns), f"COPY {src}: excluded by .dockerignore"
    for kept in ("kubep4/__init__.py", "services/apiserver/__main__.py", "deploy/docker/grpc-health-check"):
        assert not _dockerignored(kept, patterns), kept
    for dropped in (".git/HEAD", "tests/test_deploy_manifests.py", "kubep4/__pycache__/x.pyc",
                    "kubep4.egg-info/PKG-INFO", "deploy/k8s/kustomization.yaml"):
        assert _dockerignored(dropped, patterns), dropped


def _health_server(credentials=None):
    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, servicer, port


def _health_check(*args: str, env: dict[str, str] | None = None) -> int:
    return subprocess.run([sys.executable, str(HEALTH_CHECK), *args], check=False, capture_output=True,
                          timeout=30, env={**_clean_env(), **(env or {})}).returncode


def test_grpc_health_check_helper():
    from grpc_health.v1 import health_pb2

    server, servicer, port = _health_server()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert _health_check(f"127.0.0.1:{port}") == 0
        assert _health_check(f"127.0.0.1:{port}", env={"GRPC_HEALTH_CHECK_CA": ""}) == 0  # empty: plaintext
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _health_check(f"127.0.0.1:{port}") == 1
        assert _health_check(f"127.0.0.1:{port}", "no.such.Service") == 1
        assert _health_check() == 2
        assert _health_check("--bogus", f"127.0.0.1:{port}") == 2
        assert _health_check("--ca") == 2
    finally:
        server.stop(None)


def test_grpc_health_check_helper_over_tls(tmp_path):
    """A health endpoint as the services serve it: TLS with the service's certificate, no client
    certificate asked. The helper trusts a CA (--ca, or GRPC_HEALTH_CHECK_CA) and checks the name."""
    from grpc_health.v1 import health_pb2

    from kubep4 import config, tls

    ca = tls.make_ca(str(tmp_path))
    cert = tls.issue(ca, "controller", str(tmp_path), "kubep4-controller", dns=("localhost", "controller"))
    other = tls.make_ca(str(tmp_path / "other"))
    creds = config.ServiceTLS(cert.cert, cert.key).health_credentials()
    server, servicer, port = _health_server(creds)
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        addr = f"127.0.0.1:{port}"
        assert _health_check("--ca", ca.cert, addr) == 0
        assert _health_check(f"--ca={ca.cert}", addr) == 0
        assert _health_check(addr, env={"GRPC_HEALTH_CHECK_CA": ca.cert}) == 0
        assert _health_check(f"localhost:{port}", env={"GRPC_HEALTH_CHECK_CA": ca.cert}) == 0
        assert _health_check("--ca", ca.cert, "--server-name", "controller", addr) == 0
        assert _health_check("--ca", ca.cert, "--server-name", "apiserver", addr) == 1  # not its name
        assert _health_check(addr) == 1                                  # plaintext to a TLS port
        assert _health_check("--ca", other.cert, addr) == 1               # another CA
        assert _health_check("--ca", str(tmp_path / "missing.pem"), addr) == 1
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _health_check("--ca", ca.cert, addr) == 1
    finally:
        server.stop(None)

    # the apiserver's and admission's port: mTLS, health open to any certificate of the CA
    server, servicer, port = _health_server(tls.server_credentials(cert.cert, cert.key, ca.cert))
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        addr = f"127.0.0.1:{port}"
        assert _health_check("--ca", ca.cert, addr) == 1                 # no client certificate
        assert _health_check("--ca", ca.cert, "--cert", cert.cert, "--key", cert.key, addr) == 0
        assert _health_check(addr, env={"GRPC_HEALTH_CHECK_CA": ca.cert, "GRPC_HEALTH_CHECK_CERT": cert.cert,
                                        "GRPC_HEALTH_CHECK_KEY": cert.key}) == 0
        stranger = tls.issue(other, "x", str(tmp_path / "other"), "x")
        assert _health_check("--ca", ca.cert, "--cert", stranger.cert, "--key", stranger.key, addr) == 1
        assert _health_check("--ca", ca.cert, "--cert", cert.cert, addr) == 2  # a certificate needs its key
    finally:
        server.stop(None)


# =================================================================================== kustomize

VARIANTS = [".", "overlays/external-etcd", "overlays/kubernetes-placement"]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                  "CustomResourceDefinition", "PriorityClass"}
POD_TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet"}


def _merge(target: dict, patch: dict) -> None:
    """Strategic merge of a patch made only of maps and scalars (null deletes a key)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list):
            raise NotImplementedError("mini_kustomize: lists in patches need kustomize's merge keys")
        else:
            target[key] = copy.deepcopy(value)


def mini_kustomize(path: Path) -> list[dict]:
    """``kustomize build`` for the subset deploy/k8s uses: resources (files, directories),
    namespace, labels (pairs, includeTemplates, never selectors), images (newName/newTag)
    and strategic-merge ``patches: [{path}]`` of ConfigMaps.  Anything else raises."""
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    unsupported = set(k) - {"apiVersion", "kind", "namespace", "labels", "resources", "images", "patches"}
    if unsupported:
        raise NotImplementedError(f"mini_kustomize: {path}: {sorted(unsupported)}")
    objs: list[dict] = []
    for res in k.get("resources", []):
        p = (path / res).resolve()
        objs += mini_kustomize(p) if p.is_dir() else [o for o in yaml.safe_load_all(p.read_text()) if o]
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise NotImplementedError(f"mini_kustomize: patch {patch}")
        doc = yaml.safe_load((path / patch["path"]).read_text())
        if doc["kind"] not in ("ConfigMap", "Secret"):
            raise NotImplementedError("mini_kustomize: only ConfigMap/Secret patches")
        meta = doc["metadata"]
        targets = [o for o in objs if (o["kind"], o["metadata"]["name"]) == (doc["kind"], meta["name"])
                   and meta.get("namespace", o["metadata"].get("namespace"))
                   == o["metadata"].get("namespace")]
        assert len(targets) == 1, f"patch {patch['path']} matches {len(targets)} objects"
        body = {key: v for key, v in doc.items() if key not in ("apiVersion", "kind", "metadata")}
        _merge(targets[0], body)
    if "namespace" in k:
        for o in objs:
            if o["kind"] not in CLUSTER_SCOPED:
                o["metadata"]["namespace"] = k["namespace"]
    for spec in k.get("labels", []):
        if spec.get("includeSelectors"):
            raise NotImplementedError("mini_kustomize: labels.includeSelectors")
        for o in objs:
            targets = [o["metadata"]]
            if spec.get("includeTemplates") and o["kind"] in POD_TEMPLATE_KINDS:
                targets.append(o["spec"]["template"]["metadata"])
                targets += [t["metadata"] for t in o["spec"].get("volumeClaimTemplates", [])]
            elif spec.get("includeTemplates") and o["kind"] == "Job":
                targets.append(o["spec"]["template"].setdefault("metadata", {}))
            elif spec.get("includeTemplates") and o["kind"] in {"CronJob", "ReplicaSet", "Pod"}:
                raise NotImplementedError(f"mini_kustomize: templates of {o['kind']}")
            for meta in targets:
                meta.setdefault("labels", {}).update(spec["pairs"])
    for img in k.get("images", []):
        if set(img) - {"name", "newName", "newTag"}:
            raise NotImplementedError(f"mini_kustomize: image {img}")
        for o in objs:
            if o["kind"] in POD_TEMPLATE_KINDS:
                pod = o["spec"]["template"]["spec"]
                for c in pod.get("containers", []) + pod.get("initContainers", []):
                    name, _, tag = c["image"].partition(":")
                    if name == img["name"]:
                        c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag)}".rstrip(":")
    return objs


def _kustomize_binary() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def binary_kustomize(path: Path) -> list[dict] | None:
    cmd = _kustomize_binary()
    if cmd is None:
        return None
    proc = subprocess.run([*cmd, str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(cmd)} {path} failed:\n{proc.stderr}"
    return [o for o in yaml.safe_load_all(proc.stdout) if o]


def _key(o: dict) -> tuple[str, str, str]:
    return o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]


_BUILDS: dict[str, list[dict]] = {}


def build(variant: str) -> list[dict]:
    if variant not in _BUILDS:
        objs = binary_kustomize(K8S / variant)
        _BUILDS[variant] = objs if objs is not None else mini_kustomize(K8S / variant)
        keys = [_key(o) for o in _BUILDS[variant]]
        assert len(keys) == len(set(keys)), f"duplicate objects in {variant}"
    return copy.deepcopy(_BUILDS[variant])


def by_key(objs: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {_key(o): o for o in objs}


def get(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def workloads(objs: list[dict], jobs: bool = False) -> list[dict]:
    return [o for o in objs if o["kind"] in POD_TEMPLATE_KINDS or (jobs and o["kind"] == "Job")]


TLS_SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}  # cert-manager's kubernetes.io/tls Secret


def _secret_key_of(workload: dict, path: str) -> str:
    """The key of the Secret volume that ``path`` is a file of, in ``workload``'s pod; '' when none."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in containers(workload):
        for m in c.get("volumeMounts", []):
            v = volumes.get(m["name"], {})
            if "secret" in v and path.startswith(m["mountPath"].rstrip("/") + "/"):
                key = path[len(m["mountPath"].rstrip("/")) + 1:]
                items = v["secret"].get("items")
                keys = {i["path"]: i["key"] for i in items} if items else {k: k for k in TLS_SECRET_KEYS}
                return keys.get(key, "")
    return ""


def _secret_of(workload: dict, path: str) -> str:
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for c in containers(workload):
        for m in c.get("volumeMounts", []):
            if "secret" in volumes.get(m["name"], {}) and path.startswith(m["mountPath"].rstrip("/") + "/"):
                return volumes[m["name"]]["secret"]["secretName"]
    return ""


def containers(workload: dict) -> list[dict]:
    pod = workload["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("variant", VARIANTS)
def test_mini_kustomize_matches_kubectl(variant):
    real = binary_kustomize(K8S / variant)
    if real is None:
        pytest.skip("no kubectl/kustomize on PATH: manifests were built with mini_kustomize only "
                    "(`kubectl kustomize deploy/k8s` is the real check)")
    assert by_key(mini_kustomize(K8S / variant)) == by_key(real)


def _schema_versions() -> list[str]:
    from kubernetes_validate import utils
    versions = utils.all_versions()
    return sorted({versions[0], versions[-1]})


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_validates_against_the_kubernetes_schema(variant):
    import kubernetes_validate

    objs = build(variant)
    assert objs
    for o in objs:
        if o["apiVersion"].startswith("cert-manager.io/"):
            _validate_cert_manager(o)
    objs = [o for o in objs if not o["apiVersion"].startswith("cert-manager.io/")]
    for version in _schema_versions():
        for o in objs:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{variant}: {_key(o)} invalid for Kubernetes {version}: "
                            f"{e.message} at {list(e.path)}")


# cert-manager.io/v1 (not in kubernetes-validate's schemas): the fields of Certificate and Issuer
# these manifests may use, from cert-manager's API reference; anything else is a typo.
CERTIFICATE_SPEC = {"secretName", "commonName", "dnsNames", "ipAddresses", "uris", "emailAddresses", "subject",
                    "duration", "renewBefore", "privateKey", "usages", "issuerRef", "isCA", "secretTemplate",
                    "revisionHistoryLimit", "encodeUsagesInRequest", "literalSubject", "keystores",
                    "additionalOutputFormats", "nameConstraints", "otherNames", "renewBeforePercentage"}
CERTIFICATE_SUBJECT = {"organizations", "countries", "organizationalUnits", "localities", "provinces",
                       "streetAddresses", "postalCodes", "serialNumber"}
PRIVATE_KEY = {"algorithm": {"RSA", "ECDSA", "Ed25519"}, "encoding": {"PKCS1", "PKCS8"},
               "rotationPolicy": {"Never", "Always"}, "size": None}
KEY_USAGES = {"signing", "digital signature", "content commitment", "key encipherment", "key agreement",
              "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any", "server auth",
              "client auth", "code signing", "email protection", "s/mime", "ipsec end system", "ipsec tunnel",
              "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"}
ISSUER_TYPES = {"selfSigned": {"crlDistributionPoints"}, "ca": {"secretName", "crlDistributionPoints",
                                                                 "ocspServers", "issuingCertificateURLs"}}


def _validate_cert_manager(o: dict) -> None:
    where = _key(o)
    assert o["apiVersion"] == "cert-manager.io/v1", where
    assert set(o) == {"apiVersion", "kind", "metadata", "spec"}, where
    assert set(o["metadata"]) <= {"name", "namespace", "labels", "annotations"}, where
    spec = o["spec"]
    if o["kind"] == "Certificate":
        assert set(spec) <= CERTIFICATE_SPEC, (where, set(spec) - CERTIFICATE_SPEC)
        assert spec["secretName"] and spec["issuerRef"]["name"], where
        assert set(spec["issuerRef"]) <= {"name", "kind", "group"}, where
        assert set(spec.get("subject", {})) <= CERTIFICATE_SUBJECT, where
        for k, v in spec.get("privateKey", {}).items():
            assert k in PRIVATE_KEY and (PRIVATE_KEY[k] is None or v in PRIVATE_KEY[k]), (where, k, v)
        assert set(spec.get("usages", [])) <= KEY_USAGES, (where, set(spec.get("usages", [])) - KEY_USAGES)
        for f in ("duration", "renewBefore"):
            if f in spec:
                assert re.fullmatch(r"(\d+h)?(\d+m)?(\d+s)?", spec[f]) and spec[f], (where, f)
        for ip in spec.get("ipAddresses", []):
            import ipaddress
            ipaddress.ip_address(ip)
        for f in ("dnsNames", "ipAddresses", "usages"):
            assert isinstance(spec.get(f, []), list), (where, f)
    elif o["kind"] in ("Issuer", "ClusterIssuer"):
        (kind,) = spec.keys()
        assert kind in ISSUER_TYPES and set(spec[kind]) <= ISSUER_TYPES[kind], where
    else:
        pytest.fail(f"{where}: a cert-manager kind these checks do not know")


def test_schema_validation_is_strict():
    """Guard: a misspelt probe field must fail, or the test above proves nothing."""
    import kubernetes_validate

    bad = copy.deepcopy(get(build("."), "Deployment", "kubep4-apiserver"))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {"grcp": {"port": 50051}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, _schema_versions()[-1], strict=True)


def test_everything_is_in_the_kubep4_namespace():
    objs = build(".")
    assert get(objs, "Namespace", "kubep4")
    for o in objs:
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"], _key(o)
        else:
            assert o["metadata"]["namespace"] == "kubep4", _key(o)
        assert o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubep4", _key(o)


def test_replicas():
    objs = build(".")
    assert get(objs, "Deployment", "kubep4-apiserver")["spec"]["replicas"] == 2
    assert get(objs, "Deployment", "kubep4-controller")["spec"]["replicas"] == 2
    assert get(objs, "Deployment", "kubep4-builder")["spec"]["replicas"] == 2  # claims per digest: safe twice
    assert get(objs, "Deployment", "kubep4-admission")["spec"]["replicas"] >= 1
    assert get(objs, "StatefulSet", "etcd")["spec"]["replicas"] == 3
    assert get(objs, "DaemonSet", "kubep4-node-agent")


@pytest.mark.parametrize("variant", VARIANTS)
def test_rbac_is_least_privilege(variant):
    objs = build(variant)
    roles = [o for o in objs if o["kind"] in ("Role", "ClusterRole")]
    assert {(o["kind"], o["metadata"]["name"]) for o in roles} == {
        ("Role", "kubep4-controller"), ("ClusterRole", "kubep4-node-agent")}

    def rules(o):
        return sorted((tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])),
                       tuple(r.get("resourceNames", ()))) for r in o["rules"])

    role = get(objs, "Role", "kubep4-controller")
    assert rules(role) == [(("",), ("pods",), ("create", "delete", "get", "list", "watch"), ())]
    assert rules(get(objs, "ClusterRole", "kubep4-node-agent")) == [
        (("",), ("nodes",), ("get", "patch"), ()), (("",), ("nodes/status",), ("get", "patch"), ())]
    for o in roles:
        assert not o.get("aggregationRule")

    bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert {(o["kind"], o["roleRef"]["kind"], o["roleRef"]["name"],
             tuple((s["kind"], s["name"], s["namespace"]) for s in o["subjects"])) for o in bindings} == {
        ("RoleBinding", "Role", "kubep4-controller", (("ServiceAccount", "kubep4-controller", "kubep4"),)),
        ("ClusterRoleBinding", "ClusterRole", "kubep4-node-agent",
         (("ServiceAccount", "kubep4-node-agent", "kubep4"),)),
    }
    # the controller's Pods go to the namespace its Role covers
    controller = get(objs, "Deployment", "kubep4-controller")
    assert controller["metadata"]["namespace"] == role["metadata"]["namespace"]
    ns_env = env_of(containers(controller)[0])["KUBEP4_KUBE_NAMESPACE"]
    assert ns_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"

    # who runs as whom; nobody else gets an API token
    accounts = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceAccount"}
    expect_sa = {"kubep4-apiserver": "kubep4-apiserver", "kubep4-admission": "kubep4-admission",
                 "kubep4-controller": "kubep4-controller", "kubep4-node-agent": "kubep4-node-agent"}
    for w in workloads(objs):
        pod = w["spec"]["template"]["spec"]
        name = w["metadata"]["name"]
        if name in ("kubep4-controller", "kubep4-node-agent"):
            assert pod["serviceAccountName"] == expect_sa[name]
            assert pod.get("automountServiceAccountToken", True) is True
        else:
            assert pod.get("automountServiceAccountToken") is False, name
            if name in expect_sa:
                assert pod["serviceAccountName"] == expect_sa[name]
                assert accounts[expect_sa[name]]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_has_requests_limits_and_a_locked_down_security_context(variant):
    for w in workloads(build(variant), jobs=True):
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, w["metadata"]["name"]
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in containers(w):
            where = f"{w['metadata']['name']}/{c['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"].get(kind, {})), f"{where}: {kind}"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc.get("privileged"), where


KUBEP4_WORKLOADS = {"kubep4-apiserver": "apiserver", "kubep4-admission": "admission",
                    "kubep4-controller": "controller", "kubep4-node-agent": "node_agent",
                    "kubep4-builder": "builder"}


def test_kubep4_probes_run_the_health_check_helper_with_tls_on_the_listen_port():
    """Kubernetes' gRPC probes cannot do TLS: an exec probe runs grpc-health-check with the CA the
    container mounts, on the port the service listens on."""
    objs = build(".")
    for name, module in KUBEP4_WORKLOADS.items():
        w = next(o for o in workloads(objs) if o["metadata"]["name"] == name)
        (c,) = containers(w)
        env = env_of(c)
        listen = (env.get("KUBEP4_HEALTH_LISTEN") or env["KUBEP4_LISTEN"])["value"]
        host, port = _hostport(listen)
        assert host == "0.0.0.0", name
        for probe in ("readinessProbe", "livenessProbe"):
            assert set(c[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"exec"}, f"{name} {probe}"
            argv = c[probe]["exec"]["command"]
            assert argv[0] == "grpc-health-check" and argv[-1] == f"127.0.0.1:{port}", f"{name} {probe}"
            ca = argv[argv.index("--ca") + 1]
            assert ca == env["KUBEP4_TLS_CERT"]["value"].rpartition("/")[0] + "/ca.crt", f"{name} {probe}"
            assert _secret_key_of(w, ca) == "ca.crt", f"{name} {probe}"
            plain = {k: e.get("value", "x") for k, e in env.items()}
            if _health_needs_a_client_certificate(plain):
                assert _secret_key_of(w, argv[argv.index("--cert") + 1]) == "tls.crt", f"{name} {probe}"
                assert _secret_key_of(w, argv[argv.index("--key") + 1]) == "tls.key", f"{name} {probe}"
            else:
                assert "--cert" not in argv, f"{name} {probe}"
            assert c[probe].get("timeoutSeconds", 1) >= 3, f"{name} {probe}: a Python start takes a moment"
        assert port in {p["containerPort"] for p in c["ports"]}
        assert c["command"] == MODULE_COMMANDS.get(module, [f"kubep4-{module.replace('_', '-')}"])
        envs = _flag_envs(module)
        for var in env:
            if var.startswith("KUBEP4_"):
                assert var in envs, f"{name}: {var} is not a flag of services.{module}"


def test_telemetry_endpoint_comes_from_a_configmap_empty_by_default():
    from kubep4.telemetry import SERVICE_NAMES

    objs = build(".")
    config = get(objs, "ConfigMap", "kubep4-config")["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""
    for name in KUBEP4_WORKLOADS:
        (c,) = containers(get(objs, "Deployment" if name != "kubep4-node-agent" else "DaemonSet", name))
        env = env_of(c)
        ref = env["OTEL_EXPORTER_OTLP_ENDPOINT"]["valueFrom"]["configMapKeyRef"]
        assert (ref["name"], ref["key"]) == ("kubep4-config", "OTEL_EXPORTER_OTLP_ENDPOINT")
        assert env["OTEL_SERVICE_NAME"]["value"] == name and name in SERVICE_NAMES


@pytest.mark.parametrize("variant", VARIANTS)
def test_references_resolve(variant):
    """ConfigMap keys, ServiceAccounts, volumes, Service selectors and named ports all exist."""
    objs = build(variant)
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    accounts = {o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount"}
    for w in workloads(objs):
        pod = w["spec"]["template"]["spec"]
        template_labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        if "serviceAccountName" in pod:
            assert pod["serviceAccountName"] in accounts
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        volumes.update({t["metadata"]["name"]: t for t in w["spec"].get("volumeClaimTemplates", [])})
        for c in containers(w):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["key"] in configmaps[ref["name"]], f"{w['metadata']['name']}: {ref}"
                sref = e.get("valueFrom", {}).get("secretKeyRef")
                if sref:
                    assert sref.get("optional") is True, "no Secret ships with the manifests"
            for m in c.get("volumeMounts", []):
                assert m["name"] in volumes, f"{w['metadata']['name']}: {m}"
        issued = {o["spec"]["secretName"] for o in objs if o["kind"] == "Certificate"}
        for v in pod.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in configmaps
            if "secret" in v:  # no Secret ships: cert-manager writes them from the Certificates
                assert v["secret"]["secretName"] in issued, f"{w['metadata']['name']}: {v}"
    for svc in (o for o in objs if o["kind"] == "Service"):
        selected = [w for w in workloads(objs)
                    if svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert selected, f"Service {svc['metadata']['name']} selects nothing"
        for port in svc["spec"]["ports"]:
            ports = [p for w in selected for c in containers(w) for p in c.get("ports", [])]
            named = {p.get("name") for p in ports}
            numbered = {p["containerPort"] for p in ports}
            target = port.get("targetPort", port["port"])
            assert target in (named if isinstance(target, str) else numbered), (svc["metadata"]["name"], port)


def test_services_reach_etcd_and_admission_by_service_name():
    objs = build(".")
    config = get(objs, "ConfigMap", "kubep4-config")["data"]
    assert config["KUBEP4_ETCD"].startswith("https://")
    host, port = _hostport(config["KUBEP4_ETCD"].removeprefix("https://"))
    etcd_client = get(objs, "Service", host)
    assert "clusterIP" not in etcd_client["spec"] or etcd_client["spec"]["clusterIP"] != "None"
    assert port in {p["port"] for p in etcd_client["spec"]["ports"]}
    etcd = get(objs, "StatefulSet", "etcd")
    assert etcd_client["spec"]["selector"] == etcd["spec"]["selector"]["matchLabels"]
    (api,) = containers(get(objs, "Deployment", "kubep4-apiserver"))
    host, port = _hostport(env_of(api)["KUBEP4_ADMISSION"]["value"])
    assert port in {p["port"] for p in get(objs, "Service", host)["spec"]["ports"]}
    for name in ("kubep4-apiserver", "kubep4-controller", "kubep4-node-agent", "kubep4-builder"):
        kind = "DaemonSet" if name == "kubep4-node-agent" else "Deployment"
        (c,) = containers(get(objs, kind, name))
        ref = env_of(c)["KUBEP4_ETCD"]["valueFrom"]["configMapKeyRef"]
        assert (ref["name"], ref["key"]) == ("kubep4-config", "KUBEP4_ETCD"), name


def test_etcd_statefulset_bootstraps_three_members_from_pod_dns():
    objs = build(".")
    sts = get(objs, "StatefulSet", "etcd")
    headless = get(objs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {2379, 2380}
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    (c,) = containers(sts)
    args = dict(a.lstrip("-").split("=", 1) for a in c["args"] if "=" in a)
    svc = sts["spec"]["serviceName"]
    name = sts["metadata"]["name"]
    expected = ",".join(f"{name}-{i}=https://{name}-{i}.{svc}.$(POD_NAMESPACE).svc:2380"
                        for i in range(sts["spec"]["replicas"]))
    assert args["initial-cluster"] == expected
    assert args["name"] == "$(POD_NAME)"
    assert args["initial-advertise-peer-urls"] == f"https://$(POD_NAME).{svc}.$(POD_NAMESPACE).svc:2380"
    env = env_of(c)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert args["data-dir"].startswith(mount["mountPath"] + "/")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == "metrics"
    assert "http://0.0.0.0:2381" in args["listen-metrics-urls"]
    assert get(objs, "PodDisruptionBudget", "etcd")["spec"]["maxUnavailable"] == 1


def test_node_agent_daemonset(tmp_path):
    from services.node_agent.__main__ import load_devices

    objs = build(".")
    ds = get(objs, "DaemonSet", "kubep4-node-agent")
    (c,) = containers(ds)
    names = [e["name"] for e in c["env"]]
    env = env_of(c)
    for var in ("KUBEP4_NODE_NAME", "KUBEP4_KUBERNETES_NODE"):
        assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", var
    devices_file = env["KUBEP4_DEVICES_FILE"]["value"]
    assert "$(KUBEP4_NODE_NAME)" in devices_file
    # $(VAR) expansion only sees variables defined earlier in the list
    assert names.index("KUBEP4_NODE_NAME") < names.index("KUBEP4_DEVICES_FILE")
    pod = ds["spec"]["template"]["spec"]
    mount = next(m for m in c["volumeMounts"] if devices_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    devices_cm = get(objs, "ConfigMap", volume["configMap"]["name"])
    assert pod["nodeSelector"] == {"kubep4.io/switch": "true"}
    for key, text in devices_cm["data"].items():  # every example file is one the agent loads
        assert key.endswith(".yaml")
        f = tmp_path / key
        f.write_text(text)
        devices = load_devices(str(f))
        assert devices and all(d.p4rt_address and d.name for d in devices)


def test_controller_placement_default_and_overlay():
    default = get(build("."), "ConfigMap", "kubep4-config")["data"]
    assert default["KUBEP4_PLACEMENT"] == "builtin"
    k8s = build("overlays/kubernetes-placement")
    assert get(k8s, "ConfigMap", "kubep4-config")["data"] == {**default, "KUBEP4_PLACEMENT": "kubernetes"}
    (c,) = containers(get(k8s, "Deployment", "kubep4-controller"))
    env = env_of(c)
    ref = env["KUBEP4_PLACEMENT"]["valueFrom"]["configMapKeyRef"]
    assert (ref["name"], ref["key"]) == ("kubep4-config", "KUBEP4_PLACEMENT")
    assert env["KUBEP4_CONTROLLER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # apart from the ConfigMap, the overlay is the default build
    a, b = by_key(build(".")), by_key(k8s)
    assert a.keys() == b.keys()
    assert {k for k in a if a[k] != b[k]} == {("ConfigMap", "kubep4", "kubep4-config")}


def test_external_etcd_overlay_drops_the_statefulset_and_repoints_kubep4_etcd():
    default, external = by_key(build(".")), by_key(build("overlays/external-etcd"))
    etcd_objects = {k for k in default if k[2] in ("etcd", "etcd-client", "etcd-auth")}
    assert {k[0] for k in etcd_objects} == {"StatefulSet", "Service", "PodDisruptionBudget", "Job"}
    assert external.keys() == default.keys() - etcd_objects
    patch = yaml.safe_load((K8S / "overlays" / "external-etcd" / "etcd-endpoint.yaml").read_text())
    config = external[("ConfigMap", "kubep4", "kubep4-config")]["data"]
    assert config["KUBEP4_ETCD"] == patch["data"]["KUBEP4_ETCD"] != "https://etcd-client:2379"
    assert config["KUBEP4_ETCD"].startswith("https://")
    assert config == {**default[("ConfigMap", "kubep4", "kubep4-config")]["data"],
                      "KUBEP4_ETCD": patch["data"]["KUBEP4_ETCD"]}
    assert {k for k in external if external[k] != default[k]} == {("ConfigMap", "kubep4", "kubep4-config")}


# ======================================================================== TLS on Kubernetes

K8S_IDENTITIES = {  # workload -> the CN of the certificate it shows (its etcd user, its caller name)
    ("Deployment", "kubep4-apiserver"): "kubep4-apiserver",
    ("Deployment", "kubep4-admission"): "kubep4-admission",
    ("Deployment", "kubep4-controller"): "kubep4-controller",
    ("Deployment", "kubep4-builder"): "kubep4-builder",
    ("DaemonSet", "kubep4-node-agent"): "kubep4-node-agent",   # shared by every agent (docs/deploy.md)
    ("StatefulSet", "etcd"): "etcd",
    ("Job", "etcd-auth"): "root",
}
TLS_ENV_KEYS = {"KUBEP4_TLS_CERT": "tls.crt", "KUBEP4_TLS_KEY": "tls.key", "KUBEP4_TLS_CA": "ca.crt",
                "KUBEP4_CLIENT_CA": "ca.crt", "KUBEP4_ETCD_CERT": "tls.crt", "KUBEP4_ETCD_KEY": "tls.key",
                "KUBEP4_ETCD_CA": "ca.crt"}


def _certificates(objs: list[dict]) -> dict[str, dict]:
    return {o["spec"]["secretName"]: o for o in objs if o["kind"] == "Certificate"}


def _expand_ns(name: str, namespace: str) -> str:
    return name.replace("$(POD_NAMESPACE)", namespace)


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_certificates_come_from_the_kubep4_ca(variant):
    from kubep4 import devpki, etcd_auth

    objs = build(variant)
    certs = _certificates(objs)
    issuers = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Issuer"}
    (ca,) = [c for c in certs.values() if c["spec"].get("isCA")]
    assert "selfSigned" in issuers[ca["spec"]["issuerRef"]["name"]]["spec"]
    (ca_issuer,) = [i for i in issuers.values() if "ca" in i["spec"]]
    assert ca_issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    for secret, c in certs.items():
        ref = c["spec"]["issuerRef"]
        assert ref.get("kind", "Issuer") == "Issuer" and ref["name"] in issuers, secret
        assert c["metadata"]["name"] == secret, "one Certificate per Secret, named alike"
        if c is ca:
            continue
        assert ref["name"] == ca_issuer["metadata"]["name"], secret
        assert "client auth" in c["spec"]["usages"], secret
        assert c["spec"]["privateKey"]["rotationPolicy"] == "Always", secret  # a renewal is a new key
    cns = {c["spec"]["commonName"] for c in certs.values()}
    assert {etcd_auth.APISERVER, etcd_auth.CONTROLLER, etcd_auth.BUILDER, devpki.ADMISSION, etcd_auth.ROOT_USER,
            devpki.SHARED_NODE_USER, devpki.ADMIN} <= cns
    (admin,) = [c for c in certs.values() if c["spec"]["commonName"] == devpki.ADMIN]
    assert admin["spec"]["subject"]["organizations"] == [devpki.MASTERS]
    assert admin["spec"]["usages"][-1] == "client auth" and "server auth" not in admin["spec"]["usages"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_every_tls_file_is_a_key_of_the_mounted_secret(variant):
    """Each container's TLS env names a file of a Secret volume it mounts, the right key of it
    (tls.crt, tls.key, ca.crt), the certificate and key from one Secret, and that Secret's
    Certificate has the component's CN. Only the etcd-auth Job mounts etcd's root; nothing mounts
    the CA's key or the admin's certificate."""
    objs = build(variant)
    certs = _certificates(objs)
    namespace = "kubep4"
    mounted: dict[str, set[str]] = {}
    for w in workloads(objs, jobs=True):
        key = (w["kind"], w["metadata"]["name"])
        pod = w["spec"]["template"]["spec"]
        for v in pod.get("volumes", []):
            if "secret" in v:
                mounted.setdefault(v["secret"]["secretName"], set()).add(w["metadata"]["name"])
        files = {}
        for c in containers(w):
            for var, e in env_of(c).items():
                if var in TLS_ENV_KEYS:
                    path = e["value"]
                    assert _secret_key_of(w, path) == TLS_ENV_KEYS[var], (key, var, path)
                    files[var] = _secret_of(w, path)
            for a in c.get("args", []) + c.get("command", []):
                flag, _, value = a.partition("=")
                if value.startswith("/etc/") and _secret_of(w, value):
                    words = flag.lstrip("-").split("-")  # --trusted-ca-file, --peer-key-file, --etcd-cert
                    want = "ca.crt" if "ca" in words else "tls.key" if "key" in words else "tls.crt"
                    assert _secret_key_of(w, value) == want, (key, a)
                    files[flag] = _secret_of(w, value)
        if key not in K8S_IDENTITIES:
            assert not files, key
            continue
        assert files, f"{key}: no TLS"
        (secret,) = set(files.values())  # one identity per pod
        assert certs[secret]["spec"]["commonName"] == K8S_IDENTITIES[key], key
    root = next(s for s, c in certs.items() if c["spec"]["commonName"] == "root")
    ca = next(s for s, c in certs.items() if c["spec"].get("isCA"))
    admin = next(s for s, c in certs.items() if c["spec"]["commonName"] == "admin")
    assert mounted.get(root, set()) <= {"etcd-auth"}
    assert ca not in mounted and admin not in mounted
    assert namespace == get(objs, "Namespace", "kubep4")["metadata"]["name"]


def test_k8s_services_speak_tls_to_each_other_by_the_names_in_the_certificates():
    from kubep4 import devpki

    objs = build(".")
    certs = _certificates(objs)
    config = get(objs, "ConfigMap", "kubep4-config")["data"]

    def cert_of(kind: str, name: str) -> dict:
        w = get(objs, kind, name)
        (c,) = containers(w)
        env = env_of(c)
        path = env["KUBEP4_TLS_CERT"]["value"] if "KUBEP4_TLS_CERT" in env else \
            next(a.split("=", 1)[1] for a in c.get("args", []) if a.startswith("--cert-file="))
        return certs[_secret_of(w, path)]

    for kind, name in K8S_IDENTITIES:
        if kind == "Job":
            continue
        w = get(objs, kind, name)
        (c,) = containers(w)
        env = env_of(c)
        if name != "etcd":
            assert "KUBEP4_TLS_CERT" in env and "KUBEP4_TLS_KEY" in env, name  # at least its health endpoint
            assert "127.0.0.1" in cert_of(kind, name)["spec"]["ipAddresses"], name  # the exec probes dial it
        if "KUBEP4_ETCD" in env:
            assert {"KUBEP4_ETCD_CA", "KUBEP4_ETCD_CERT", "KUBEP4_ETCD_KEY"} <= set(env), name
            assert config[env["KUBEP4_ETCD"]["valueFrom"]["configMapKeyRef"]["key"]].startswith("https://")
    api = env_of(containers(get(objs, "Deployment", "kubep4-apiserver"))[0])
    assert {"KUBEP4_CLIENT_CA", "KUBEP4_TLS_CA"} <= set(api)
    adm = env_of(containers(get(objs, "Deployment", "kubep4-admission"))[0])
    assert adm["KUBEP4_ALLOWED_CLIENTS"]["value"] == cert_of("Deployment", "kubep4-apiserver")["spec"]["commonName"]
    assert "KUBEP4_TLS_CA" in adm
    # the names each is dialled by
    host = api["KUBEP4_ADMISSION"]["value"].rpartition(":")[0]
    assert host in cert_of("Deployment", "kubep4-admission")["spec"]["dnsNames"]
    assert {"kubep4-apiserver", "kubep4-apiserver.kubep4.svc", "localhost"} <= set(
        cert_of("Deployment", "kubep4-apiserver")["spec"]["dnsNames"])  # in the cluster; port-forward
    etcd_names = set(cert_of("StatefulSet", "etcd")["spec"]["dnsNames"])
    etcd_host = config["KUBEP4_ETCD"].removeprefix("https://").rpartition(":")[0]
    assert etcd_host in etcd_names
    sts = get(objs, "StatefulSet", "etcd")
    (c,) = containers(sts)
    args = dict(a.lstrip("-").split("=", 1) for a in c["args"] if "=" in a)
    flags = {a.lstrip("-").split("=", 1)[0] for a in c["args"]}
    assert {"client-cert-auth", "peer-client-cert-auth"} <= flags
    for url_flag in ("listen-client-urls", "advertise-client-urls", "listen-peer-urls",
                     "initial-advertise-peer-urls", "initial-cluster"):
        assert "http://" not in args[url_flag] and "https://" in args[url_flag], url_flag
    for member in args["initial-cluster"].split(","):  # every peer's name is in the certificate
        host = _expand_ns(member.split("=", 1)[1].removeprefix("https://").rpartition(":")[0], "kubep4")
        assert host in etcd_names, host
    assert args["listen-metrics-urls"].startswith("http://")  # the kubelet's httpGet probes: no keys there
    # the Job: root's files, the same etcd, the agents' shared user
    job = get(objs, "Job", "etcd-auth")
    (jc,) = containers(job)
    jargs = dict(a.lstrip("-").split("=", 1) for a in jc["command"] if "=" in a)
    assert jc["command"][:3] == ["python", "-m", "kubep4.devpki"] and "--enable-etcd-auth" in jc["command"]
    assert jargs["etcd"] == config["KUBEP4_ETCD"]
    assert jargs["shared-node-user"] == devpki.SHARED_NODE_USER == \
        cert_of("DaemonSet", "kubep4-node-agent")["spec"]["commonName"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_k8s_device_tls_files_are_in_the_agents_secret(tmp_path):
    from services.node_agent.__main__ import load_devices

    objs = build(".")
    ds = get(objs, "DaemonSet", "kubep4-node-agent")
    for key, text in get(objs, "ConfigMap", "kubep4-devices")["data"].items():
        f = tmp_path / key
        f.write_text(text)
        for d in load_devices(str(f)):
            assert d.tls.ca_file, f"{key}: {d.name} is plaintext"
            assert _secret_key_of(ds, d.tls.ca_file) == "ca.crt"
            assert _secret_key_of(ds, d.tls.cert_file) == "tls.crt"
            assert _secret_key_of(ds, d.tls.key_file) == "tls.key"


def test_the_job_and_the_devpki_cli_agree():
    """The etcd-auth Job's flags are the CLI's (parse them with its parser)."""
    import argparse

    from kubep4 import devpki

    job = get(build("."), "Job", "etcd-auth")
    (c,) = containers(job)
    parsed = {}
    orig = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):  # the CLI's own parser, stopped before it connects
        parsed.update(vars(orig(self, args, namespace)))
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = parse
    try:
        with pytest.raises(SystemExit) as stop:
            devpki.main(c["command"][3:])
    finally:
        argparse.ArgumentParser.parse_args = orig
    assert stop.value.code == 0
    assert parsed["enable_etcd_auth"] is True and parsed["etcd"].startswith("https://")
    assert parsed["etcd_cert"].endswith("/tls.crt") and parsed["etcd_wait"] >= 60


def test_cert_manager_checks_catch_a_typo():
    """Guard: the hand-written cert-manager checks must fail on a misspelt field or usage."""
    cert = copy.deepcopy(get(build("."), "Certificate", "kubep4-apiserver-tls"))
    _validate_cert_manager(cert)
    for path, value in ((("spec", "dnsName"), ["x"]), (("spec", "usages"), ["server-auth"]),
                        (("spec", "privateKey"), {"algorithm": "ECDSA", "rotationPolicy": "always"})):
        bad = copy.deepcopy(cert)
        bad[path[0]][path[1]] = value
        with pytest.raises(AssertionError):
            _validate_cert_manager(bad)


def _issue_like_cert_manager(objs: list[dict], root: Path) -> dict[str, Path]:
    """What cert-manager would write for each Certificate of the build, made here with kubep4.tls:
    a directory per Secret holding tls.crt, tls.key and ca.crt (the CA Issuer's CA)."""
    from kubep4 import tls

    ca = tls.make_ca(str(root / "kubep4-ca"), common_name="kubep4-ca")
    out = {}
    for c in (o for o in objs if o["kind"] == "Certificate" and not o["spec"].get("isCA")):
        spec = c["spec"]
        d = root / spec["secretName"]
        issued = tls.issue(ca, "tls", str(d), spec["commonName"], spec.get("subject", {}).get("organizations", ()),
                           dns=spec.get("dnsNames", ()), ips=spec.get("ipAddresses", ()),
                           client="client auth" in spec["usages"], server="server auth" in spec["usages"])
        os.replace(issued.cert, d / "tls.crt")
        os.replace(issued.key, d / "tls.key")
        shutil.copyfile(ca.cert, d / "ca.crt")
        out[spec["secretName"]] = d
    return out


def test_k8s_wiring_runs_without_a_cluster(tmp_path):
    """No cluster here, so the built manifests are run as local processes: certificates issued as
    the Certificates ask (CN, names, usages; what cert-manager would write into each Secret), etcd
    with the StatefulSet's TLS flags (one member), the etcd-auth Job's command, then one pod of
    admission, the apiserver, the controller, the builder and the node agent with their env resolved
    (ConfigMap keys, field refs, $(VAR)), their mounts mapped to directories and the Service names
    to loopback ports. Every exec probe must pass and the admin's certificate must get the example
    (one replica) Ready on a reference target serving P4Runtime over mTLS. Not run: Kubernetes
    itself, cert-manager, 3 etcd members, the agent's Node patching (KUBEP4_KUBERNETES_NODE)."""
    import time

    from kubep4 import tls
    from kubep4.client import Client
    from kubep4.etcd_server import EtcdServer, EtcdTLS, free_port

    objs = build(".")
    secrets = _issue_like_cert_manager(objs, tmp_path / "secrets")
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    node = "worker-1"

    def mounts_of(w: dict) -> dict[str, Path]:
        pod = w["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        out = {}
        for c in containers(w):
            for m in c.get("volumeMounts", []):
                v = volumes.get(m["name"], {})
                if "secret" in v:
                    out[m["mountPath"]] = secrets[v["secret"]["secretName"]]
                else:
                    d = tmp_path / w["metadata"]["name"] / m["name"]
                    d.mkdir(parents=True, exist_ok=True)
                    out[m["mountPath"]] = d
        return out

    sts = get(objs, "StatefulSet", "etcd")
    emap = mounts_of(sts)

    def in_mounts(value: str, mounts: dict[str, Path]) -> str:
        for mp, d in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            if value.startswith(mp + "/"):
                return str(d) + value[len(mp):]
        return value

    (ec,) = containers(sts)
    eargs = dict(a.lstrip("-").split("=", 1) for a in ec["args"] if "=" in a)
    etcd = EtcdServer(data_dir=str(tmp_path / "etcd"), tls=EtcdTLS(
        in_mounts(eargs["cert-file"], emap), in_mounts(eargs["key-file"], emap),
        in_mounts(eargs["trusted-ca-file"], emap))).start()
    procs: dict[str, subprocess.Popen] = {}
    try:
        etcd_url = configmaps["kubep4-config"]["KUBEP4_ETCD"]
        ports: dict[tuple[str, int], int] = {}
        names = {etcd_url.removeprefix("https://"): f"127.0.0.1:{etcd.port}"}
        for svc in (o for o in objs if o["kind"] == "Service" and not o["metadata"]["name"].startswith("etcd")):
            for port in svc["spec"]["ports"]:
                sel = next(w for w in workloads(objs)
                           if svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items())
                ports.setdefault((sel["metadata"]["name"], port["port"]), free_port())
                names[f"{svc['metadata']['name']}:{port['port']}"] = f"127.0.0.1:{ports[(sel['metadata']['name'], port['port'])]}"

        def resolve(w: dict, c: dict, mounts: dict[str, Path]) -> dict[str, str]:
            env: dict[str, str] = {}
            for e in c.get("env", []):
                if "value" in e:
                    v = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
                else:
                    src = e["valueFrom"]
                    if "configMapKeyRef" in src:
                        v = configmaps[src["configMapKeyRef"]["name"]][src["configMapKeyRef"]["key"]]
                    elif "fieldRef" in src:
                        v = {"metadata.name": f"{w['metadata']['name']}-0", "metadata.namespace": "kubep4",
                             "spec.nodeName": node}[src["fieldRef"]["fieldPath"]]
                    else:
                        assert src["secretKeyRef"].get("optional"), e
                        continue
                env[e["name"]] = v
            for k, v in list(env.items()):
                for host, to in names.items():
                    v = v.replace(host, to)
                m = re.fullmatch(r"0\.0\.0\.0:(\d+)", v)
                if m:
                    key = (w["metadata"]["name"], int(m.group(1)))
                    v = f"127.0.0.1:{ports.setdefault(key, free_port())}"
                env[k] = in_mounts(v, mounts)
            return env

        job = get(objs, "Job", "etcd-auth")
        (jc,) = containers(job)
        jm = mounts_of(job)
        argv = [in_mounts(a.replace(etcd_url, etcd.client_url), jm) if "=" not in a else
                a.split("=", 1)[0] + "=" + in_mounts(a.split("=", 1)[1].replace(etcd_url, etcd.client_url), jm)
                for a in jc["command"]]
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr

        # a reference target for the example device, with a certificate of the CA for its name
        ds = get(objs, "DaemonSet", "kubep4-node-agent")
        dmounts = mounts_of(ds)
        sw_port = free_port()
        ca = tls.CA(str(tmp_path / "secrets" / "kubep4-ca" / "ca.pem"), str(tmp_path / "secrets" / "kubep4-ca" / "ca-key.pem"))
        sw = tls.issue(ca, "switch", str(tmp_path / "switch"), "switch-sw1", dns=("localhost",), ips=("127.0.0.1",))
        log = open(tmp_path / "switch.log", "w")
        procs["switch"] = subprocess.Popen(
            [sys.executable, "-m", "kubep4.reftarget", "--device", f"1@127.0.0.1:{sw_port}", "--grpc-server-ssl",
             "--grpc-server-cacert", ca.cert, "--grpc-server-cert", sw.cert, "--grpc-server-key", sw.key,
             "--grpc-server-with-client-auth"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        example = yaml.safe_load(configmaps["kubep4-devices"]["example-node.yaml"])
        for d in example["devices"]:
            d["p4rtAddress"] = f"127.0.0.1:{sw_port}"
            d["tls"] = {k: in_mounts(v, dmounts) for k, v in d["tls"].items()}
        devices_mount = next(mp for mp in dmounts if mp.endswith("/devices"))
        (dmounts[devices_mount] / f"{node}.yaml").write_text(yaml.safe_dump(example))

        probes = {}
        for kind, name in [("Deployment", "kubep4-admission"), ("Deployment", "kubep4-apiserver"),
                           ("Deployment", "kubep4-controller"), ("Deployment", "kubep4-builder"),
                           ("DaemonSet", "kubep4-node-agent")]:
            w = get(objs, kind, name)
            (c,) = containers(w)
            mounts = mounts_of(w)
            env = resolve(w, c, mounts)
            env.pop("KUBEP4_KUBERNETES_NODE", None)  # no Kubernetes API to patch a Node in
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = ""
            argv = c["command"]
            module = argv[2] if argv[:2] == ["python", "-m"] else "services." + argv[0].removeprefix("kubep4-").replace("-", "_")
            log = open(tmp_path / f"{name}.log", "w")
            procs[name] = subprocess.Popen([sys.executable, "-m", module, *argv[3:]], cwd=ROOT, stdout=log,
                                           stderr=subprocess.STDOUT, env={**_clean_env(), **env})
            cmd = c["readinessProbe"]["exec"]["command"]
            assert cmd == c["livenessProbe"]["exec"]["command"], name
            *opts, address = cmd[1:]
            port = ports[(name, _hostport(address)[1])]
            probes[name] = [in_mounts(a, mounts) for a in opts] + [f"127.0.0.1:{port}"]

        deadline = time.monotonic() + 90
        waiting = set(probes)
        while waiting and time.monotonic() < deadline:
            waiting = {n for n in waiting if _health_check(*probes[n]) != 0}
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead, {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in dead}
            time.sleep(1)
        assert not waiting, {n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in waiting}

        admin = secrets["kubep4-admin-tls"]
        api = names["kubep4-apiserver:50051"]
        with Client(api, ca=str(admin / "ca.crt"), cert=str(admin / "tls.crt"), key=str(admin / "tls.key")) as c:
            me = c.whoami()
            assert (me.user, me.authenticated_by) == ("admin", "certificate") and "system:masters" in me.groups
            from kubep4 import manifest
            pipeline, deployment = manifest.load(str(ROOT / "examples" / "basic" / "deployment.yaml"))
            deployment.spec.replicas = 1
            c.apply(pipeline)
            c.apply(deployment)
            assert c.wait_ready("basic", timeout=60).status.ready_replicas == 1
            assert [n.metadata.name for n in c.list("nodes")] == [node]
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        etcd.cleanup()
