"""The boot-storm benchmark keeps working: bench/bootstorm/run --quick.

Runs the small variant (N = 2, a tiny template and trace, small loop-device
filesystems) into a temporary directory and checks that it wrote the table
and the plots, that the numbers are sane (a throttled HDD is read in the
configurations that read the template there, never in the replica one) and
that it left nothing behind: no pool, loop device, mount, cgroup or work
directory.
"""

import json
import os
import subprocess
import time

from taplib import Suite, make_tmpdir, run, TOP

RUN = os.path.join(TOP, "bench", "bootstorm", "run")
TIMEOUT = 120

suite = Suite("bootstorm")
out = make_tmpdir("bootstorm-")
suite.cleanup_dir(out)
state = {}


def results():
    return state["results"]


def storm(config):
    entry = results()["configs"][config]
    assert entry["status"] == "ok", entry["status"]
    runs = entry["runs"]
    assert [r["n"] for r in runs] == [2], runs
    return runs[0]


@suite.step("bench/bootstorm/run --quick finishes in time and exits 0")
def _():
    start = time.monotonic()
    proc = subprocess.run([RUN, "--quick", "--out", out], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    state["output"] = proc.stdout
    elapsed = time.monotonic() - start
    print("# quick run: %.1f s" % elapsed)
    assert proc.returncode == 0, proc.stdout[-4000:]
    with open(os.path.join(out, "results.json")) as f:
        state["results"] = json.load(f)


@suite.step("the table is printed and written to results.md, with the targets")
def _():
    text = state["output"]
    assert "| config | N | makespan s |" in text, text
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    for config in ("hdd", "none", "copy"):
        assert "| %s | " % config in md, md
    assert "zero primary-tier reads" in md and "cp --sparse=always" in md, md
    statuses = {t["status"] for t in results()["targets"]}
    assert statuses <= {"PASS", "FAIL", "SKIP"}, statuses


@suite.step("the PNG plots exist and are referenced by results.md")
def _():
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    for name in ("makespan.png", "tier_reads.png", "iostat.png"):
        path = os.path.join(out, name)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        assert os.path.getsize(path) > 10000, name
        assert "](%s)" % name in md, name


@suite.step("hdd and none read the template on the throttled HDD tier")
def _():
    trace = results()["meta"]["trace"]
    for config in ("hdd", "none"):
        r = storm(config)
        assert r["hdd_reads"] > 0 and r["hdd_bytes"] >= 2 * trace["read_bytes"], (config, r)
        assert 0 < r["p50"] <= r["p95"] <= r["makespan"] + 1e-6, (config, r)
    # The throttle acts: 2 x the trace's IOs at most ~200/s (+ a burst allowance).
    none = storm("none")
    assert none["makespan"] >= 0.5 * none["hdd_reads"] / results()["meta"]["iops"], none
    # none keeps the overlays on the SSD: the SSD is read (headers), the HDD
    # carries the template's bytes.
    assert none["ssd_reads"] > 0, none


@suite.step("copy: the storm reads nothing from the HDD (or the policy is unavailable)")
def _():
    entry = results()["configs"]["copy"]
    if entry["status"].startswith("skipped"):
        assert entry["status"] == "skipped: replica policy not available", entry
        print("# copy: %s" % entry["status"])
        return
    r = storm("copy")
    assert r["hdd_reads"] == 0 and r["hdd_bytes"] == 0, r
    assert r["ssd_bytes"] >= 2 * results()["meta"]["trace"]["read_bytes"], r
    rep = results()["replica"]
    assert rep["replica_in_secondary"], rep
    assert rep["replica_s"] > 0 and rep["cp_s"] > 0, rep


@suite.step("nothing is left behind: pools, loop devices, mounts, cgroup, work directory")
def _():
    meta = results()["meta"]
    pools = run(["virsh", "-q", "pool-list", "--all", "--name"])[1].split()
    assert not set(meta["pools"]) & set(pools), pools
    assert not os.path.exists(meta["workdir"]), meta["workdir"]
    assert not os.path.exists(meta["cgroup_path"]), meta["cgroup_path"]
    loops = run(["losetup", "-a"])[1]
    assert meta["workdir"] not in loops, loops
    with open("/proc/mounts") as f:
        assert meta["workdir"] not in f.read()


suite.finish()
