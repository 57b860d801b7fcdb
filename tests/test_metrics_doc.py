"""docs/metrics.md lists every metric the binaries export, with its labels;
the suggested alerts (deploy/prometheus) pass promtool's check and unit tests;
the alerts and the Grafana dashboard (deploy/grafana) name only documented
metrics."""

import asyncio
import json
import os
import re
import shutil
import subprocess
import urllib.request

import pytest

import harness

DOC = os.path.join(harness.REPO, "docs", "metrics.md")
PROMETHEUS = os.path.join(harness.REPO, "deploy", "prometheus")
DASHBOARD = os.path.join(harness.REPO, "deploy", "grafana", "parley.json")
PROMTOOL = "/usr/local/lib/parley/promtool"  # tools/deps.sh test fetches it.


def documented():
    """{metric: set(labels)} from the doc's tables."""
    out = {}
    with open(DOC, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\| `(\w+)` \| (\w+) \| ([^|]*)\|", line)
            if m:
                out[m.group(1)] = set(re.findall(r"`(\w+)`", m.group(3)))
    return out


def exported(text):
    """{family: set(labels)} of a /metrics page."""
    families = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\w+) ", line)
        if m:
            families[m.group(1)] = set()
            continue
        m = re.match(r"(\w+)\{([^}]*)\}", line)
        if m:
            name = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
            if name not in families:
                name = m.group(1)
            labels = {kv.split("=")[0] for kv in m.group(2).split(",")}
            families.setdefault(name, set()).update(labels - {"le"})
    return families


def scrape(address):
    return urllib.request.urlopen(f"http://{address}/metrics",
                                  timeout=10).read().decode()


async def _exercise(gateway, service):
    import websockets  # Debian's python3-websockets.
    token = harness.mint_token(service.token_secret, "alice")
    async with websockets.connect(f"ws://{gateway.address}/?token={token}",
                                  subprotocols=["parley.v1.json"]) as ws:
        await ws.recv()  # welcome
        await ws.send(json.dumps({"ping": {"nonce": "n"}}))
        await ws.recv()
    bad = harness.mint_token("wrong", "alice")
    try:
        async with websockets.connect(
                f"ws://{gateway.address}/?token={bad}",
                subprotocols=["parley.v1.json"]) as ws:
            await ws.recv()
    except websockets.ConnectionClosed:
        pass


def test_every_exported_metric_is_documented_with_its_labels(tmp_path, procs):
    service = procs.add(harness.start_service(
        str(tmp_path), extra=["--webhook_url=http://127.0.0.1:9/hook",
                              "--webhook_secret=s"]))
    gateway = procs.add(harness.start_gateway(str(tmp_path), service))
    admin = harness.AdminClient(service)
    admin.call("CreateUser", id="alice")
    admin.close()
    # Handshakes, closes, frames and opens have series once they happen.
    asyncio.run(asyncio.wait_for(_exercise(gateway, service), 30))
    docs = documented()
    missing = []
    for who, address in (("service", service.metrics_address),
                         ("gateway", gateway.metrics_address)):
        for name, labels in exported(scrape(address)).items():
            if name not in docs:
                missing.append(f"{who}: {name} is not in docs/metrics.md")
            elif not labels <= docs[name]:
                missing.append(f"{who}: {name} labels {sorted(labels)} "
                               f"(documented: {sorted(docs[name])})")
    assert not missing, "\n".join(missing)


def _metric_names(expr):
    return {m for m in re.findall(r"\b([a-z_]+)(?=[{\[( ]|$)", expr)
            if m.startswith(("parley_", "process_"))}


def test_alerts_and_dashboard_name_only_documented_metrics():
    docs = documented()
    with open(os.path.join(PROMETHEUS, "parley-alerts.yml"),
              encoding="utf-8") as f:
        exprs = re.findall(r"expr: (.*)", f.read())
    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    used = set()
    for expr in exprs:
        for name in _metric_names(expr):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name))
    assert used and used <= set(docs), sorted(used - set(docs))
    assert all(p["datasource"]["uid"] == "prometheus"
               for p in dashboard["panels"])


def test_alert_rules_pass_promtool():
    promtool = PROMTOOL if os.access(PROMTOOL, os.X_OK) else shutil.which(
        "promtool")
    if promtool is None:
        pytest.fail(f"promtool is missing: run tools/deps.sh test (it puts "
                    f"Debian's promtool at {PROMTOOL})")
    for args in (["check", "rules", "parley-alerts.yml"],
                 ["test", "rules", "parley-alerts.test.yml"]):
        out = subprocess.run([promtool, *args], cwd=PROMETHEUS,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
