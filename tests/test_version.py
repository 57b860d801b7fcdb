"""Every binary says what it is: `--version` prints the version from VERSION,
the commit and the build mode and exits 0."""

import os
import re
import subprocess
import time

import harness

BINARIES = ("service/parley-service", "gateway/parley-gateway",
            "tools/parleyctl")


def test_every_binary_prints_its_version_and_exits_0():
    with open(os.path.join(harness.REPO, "VERSION"), encoding="utf-8") as f:
        version = f.read().strip()
    for rel in BINARIES:
        name = os.path.basename(rel)
        out = subprocess.run([harness.bin_path(rel), "--version"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (rel, out.stderr)
        assert re.fullmatch(
            rf"{name} {re.escape(version)} \(commit ([0-9a-f]{{7,40}}"
            rf"(-dirty)?|unknown), (opt|fastbuild|dbg)\)\n",
            out.stdout), (rel, out.stdout)


def _metrics(address):
    import urllib.request
    return urllib.request.urlopen(f"http://{address}/metrics",
                                  timeout=10).read().decode()


def test_both_metrics_say_the_build_the_start_time_and_count_from_zero(
        tmp_path, procs):
    with open(os.path.join(harness.REPO, "VERSION"), encoding="utf-8") as f:
        version = f.read().strip()
    service = procs.add(harness.start_service(str(tmp_path)))
    gateway = procs.add(harness.start_gateway(str(tmp_path), service))
    for text in (_metrics(service.metrics_address),
                 _metrics(gateway.metrics_address)):
        build = re.search(r'^parley_build_info\{version="([^"]+)",'
                          r'commit="([^"]+)",mode="(\w+)"\} 1$', text, re.M)
        assert build and build.group(1) == version, text[:500]
        start = re.search(r"^process_start_time_seconds (\S+)$", text, re.M)
        assert start and 0 < time.time() - float(start.group(1)) < 600
    # Refusals are counted from the start (zero), before the first one.
    service_text = _metrics(service.metrics_address)
    for code in ("BACKPRESSURE", "RATE_LIMITED", "UNAVAILABLE"):
        assert (f'parley_service_errors_total{{code="ERROR_CODE_{code}"}} 0'
                in service_text), code
    gateway_text = _metrics(gateway.metrics_address)
    for series in ('parley_gateway_frames_refused_total{reason="rate_limit"} 0',
                   'parley_gateway_frames_refused_total{reason="backpressure"}'
                   ' 0', "parley_gateway_slow_consumer_closes_total 0",
                   "parley_gateway_pong_timeouts_total 0"):
        assert series in gateway_text, series
