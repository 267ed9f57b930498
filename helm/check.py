"""Lints and renders helm/vdb with Helm's Go library and checks the result (see check.sh)."""

import copy
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ERROR = 3  # Helm's support.ErrorSev


def lint_in_process(lib_path, chart):
    """Runs Helm's lint on `chart`; prints the JSON result (stderr carries Helm's log)."""
    lib = ctypes.CDLL(lib_path)
    handle = ctypes.c_ulonglong()
    rc = lib.helm_sdkpy_config_create(b"default", None, None, b"{}", ctypes.byref(handle))
    assert rc == 0, "helm config_create failed"
    out = ctypes.c_char_p()
    rc = lib.helm_sdkpy_lint(handle, chart.encode(), ctypes.byref(out))
    assert rc == 0, "helm lint call failed"
    print(out.value.decode())


def go_unquote(s):
    s = re.sub(r"\\x([0-9a-fA-F]{2})", r"\\u00\1", s)
    return json.loads('"' + s + '"')


def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def render(lib, chart, overrides):
    """Lints a copy of the chart with `overrides` merged into values.yaml; returns (lint
    messages' severities by path, rendered documents by template, fail messages)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = os.path.join(tmp, "vdb")
        shutil.copytree(chart, copy_dir)
        values_path = os.path.join(copy_dir, "values.yaml")
        values = yaml.safe_load(open(values_path))
        yaml.safe_dump(merge(values, copy.deepcopy(overrides)), open(values_path, "w"))
        templates = sorted(
            f for f in os.listdir(os.path.join(copy_dir, "templates"))
            if f.endswith(".yaml"))
        # Lint mode logs `fail` instead of stopping: dump every template that way.
        with open(os.path.join(copy_dir, "templates", "zz-dump.yaml"), "w") as f:
            for t in templates:
                f.write('{{ fail (printf "DUMP<<%s>>%s<<END>>" "' + t + '" (include (print $.Template.BasePath "/' + t + '") .)) }}\n')
        proc = subprocess.run([sys.executable, __file__, "--lint", lib, copy_dir],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            sys.exit(f"helm lint crashed:\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    messages = [(m["Severity"], m["Path"]) for m in result["Messages"]]
    rendered, fails = {}, []
    for line in proc.stderr.splitlines():
        m = re.search(r'funcMap fail message="(.*)"$', line)
        if not m:
            continue
        msg = go_unquote(m.group(1))
        d = re.match(r"DUMP<<([^>]+)>>(.*)<<END>>$", msg, re.S)
        if d:
            rendered[d.group(1)] = [doc for doc in yaml.safe_load_all(d.group(2)) if doc]
        else:
            fails.append(msg)
    return messages, rendered, fails


def objects(rendered):
    return {(o["kind"], o["metadata"]["name"]): o for docs in rendered.values() for o in docs}


def main():
    lib, chart = sys.argv[1], sys.argv[2]
    checks = 0

    def check(cond, what):
        nonlocal checks
        if not cond:
            sys.exit(f"helm/check: FAILED: {what}")
        checks += 1

    def clean(name, overrides):
        messages, rendered, fails = render(lib, chart, overrides)
        errors = [p for sev, p in messages if sev >= ERROR and not p.endswith("zz-dump.yaml")]
        check(not errors, f"{name}: helm lint reports errors in {errors}")
        check(not fails, f"{name}: templates fail: {fails}")
        objs = objects(rendered)
        print(f"helm/check: {name}: lint clean, {len(objs)} objects: "
              + ", ".join(sorted(f"{k}/{n}" for k, n in objs)))
        return objs

    rel = "test-release-vdb"  # lint renders release "test-release"

    # Defaults: 3 shard nodes, 2 routers, 1 etcd member.
    objs = clean("defaults", {})
    dep = objs[("Deployment", f"{rel}-router")]
    check(dep["spec"]["replicas"] == 2, "2 routers by default")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "router readiness on /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "router liveness on /healthz")
    check(c["args"] == ["--listen", "0.0.0.0:6333"], "router listens on 0.0.0.0:6333")
    check({"name": "VDB_ROUTER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
          in c["env"], "router id = pod name")
    check("checksum/config" in dep["spec"]["template"]["metadata"]["annotations"],
          "router settings roll the pods")
    check(pod["initContainers"][0]["name"] == "wait-for-metastore", "waits for etcd")
    cm = objs[("ConfigMap", f"{rel}-router")]["data"]
    ns = ""  # lint renders an empty namespace
    check(cm["VDB_METASTORE"] == f"etcd://{rel}-etcd-0.{rel}-etcd-headless.{ns}.svc:2379",
          f"metastore is the chart's etcd, got {cm['VDB_METASTORE']}")
    nodes = cm["VDB_NODES"].split(",")
    check(nodes == [f"{rel}-shard-{i}=http://{rel}-shard-{i}.{rel}-shard-headless.{ns}.svc:6334"
                    for i in range(3)], f"nodes are the shard pods' stable names, got {nodes}")
    sts = objs[("StatefulSet", f"{rel}-shard")]
    check(sts["spec"]["serviceName"] == f"{rel}-shard-headless", "shard headless service")
    svc = objs[("Service", f"{rel}-router")]
    check(svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"],
          "router Service selects the router pods")
    pdb = objs[("PodDisruptionBudget", f"{rel}-router")]
    check(pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"],
          "router PDB selects the router pods")
    etcd = objs[("StatefulSet", f"{rel}-etcd")]
    env = {e["name"]: e.get("value") for e in etcd["spec"]["template"]["spec"]["containers"][0]["env"]}
    check(env["ETCD_INITIAL_CLUSTER"] == f"{rel}-etcd-0=http://{rel}-etcd-0.{rel}-etcd-headless.{ns}.svc:2380",
          f"etcd initial cluster, got {env['ETCD_INITIAL_CLUSTER']}")
    check(objs[("Service", f"{rel}-etcd-headless")]["spec"]["publishNotReadyAddresses"],
          "etcd members find each other before they are ready")
    check(("PodDisruptionBudget", f"{rel}-etcd") not in objs, "no PDB for a single etcd member")
    check(not any(k == "ServiceMonitor" for k, _ in objs), "no ServiceMonitor by default")

    # Bigger: 5 shard nodes, 3 routers, 3 etcd members, ServiceMonitors.
    objs = clean("5 shards, 3 routers, 3 etcd, monitors", {
        "shard": {"replicas": 5}, "router": {"replicas": 3}, "etcd": {"replicas": 3},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}})
    cm = objs[("ConfigMap", f"{rel}-router")]["data"]
    check(len(cm["VDB_NODES"].split(",")) == 5, "5 nodes registered")
    check(cm["VDB_METASTORE"].count(",") == 2, "3 etcd endpoints")
    check(objs[("Deployment", f"{rel}-router")]["spec"]["replicas"] == 3, "3 routers")
    check(("PodDisruptionBudget", f"{rel}-etcd") in objs, "etcd PDB with 3 members")
    jobs = {}
    for (kind, name), o in objs.items():
        if kind == "ServiceMonitor":
            relabel = o["spec"]["endpoints"][0]["relabelings"][0]
            jobs[name] = relabel["replacement"]
            check(o["metadata"]["labels"].get("release") == "prometheus", "monitor labels")
    check(jobs == {f"{rel}-shard": "vdb-shard", f"{rel}-router": "vdb-router", f"{rel}-etcd": "etcd"},
          f"ServiceMonitor jobs, got {jobs}")

    # External etcd.
    objs = clean("external etcd", {
        "etcd": {"enabled": False},
        "router": {"metastore": "etcd://etcd-a.infra:2379,etcd-b.infra:2379", "waitForMetastore": False}})
    check(not any(k == "StatefulSet" and n.endswith("-etcd") for k, n in objs), "no etcd")
    check(objs[("ConfigMap", f"{rel}-router")]["data"]["VDB_METASTORE"]
          == "etcd://etcd-a.infra:2379,etcd-b.infra:2379", "external metastore")
    check("initContainers" not in objs[("Deployment", f"{rel}-router")]["spec"]["template"]["spec"],
          "no wait without waitForMetastore")

    # Shard nodes only.
    objs = clean("shard nodes only", {"router": {"enabled": False}, "etcd": {"enabled": False}})
    check(not any(o["metadata"]["labels"].get("app.kubernetes.io/component") in ("router", "etcd")
                  for o in objs.values()), "no router or etcd objects")

    # Values the chart refuses.
    for name, overrides, expected in [
        ("no metastore", {"etcd": {"enabled": False}}, "the routers need etcd"),
        ("local metastore", {"router": {"metastore": "local:///data/meta.json"}},
         "router.metastore must be etcd://"),
        ("even etcd", {"etcd": {"replicas": 2}}, "etcd.replicas must be odd"),
    ]:
        _, _, fails = render(lib, chart, overrides)
        check(any(expected in f for f in fails), f"{name}: expected a failure {expected!r}, got {fails}")
        print(f"helm/check: {name}: refused ({expected})")

    print(f"helm/check: ok, {checks} checks")


if __name__ == "__main__":
    if sys.argv[1] == "--lint":
        lint_in_process(sys.argv[2], sys.argv[3])
    else:
        main()
