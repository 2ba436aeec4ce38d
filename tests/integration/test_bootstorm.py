"""The boot-storm benchmark keeps working: bench/bootstorm/run --quick.

Runs the small variant (N = 2, a tiny synthetic template and trace, the
first reads of the real guest's boot trace, small loop-device filesystems)
into a temporary directory and checks that it wrote the table and the
plots, that the numbers are sane (a throttled HDD is read in the
configurations that read the template there, less with the page cache,
never in the replica one or the CPU floor) and that it left nothing behind:
no pool, loop device, mount, cgroup, RAM directory or work directory. The
first run builds the real guest and records its boot trace (cached).
"""

import json
import os
import subprocess
import time

from taplib import Suite, make_tmpdir, run, TOP

RUN = os.path.join(TOP, "bench", "bootstorm", "run")
MiB = 1024 * 1024
TIMEOUT = 2400      # the first run builds the guest image and records its trace

suite = Suite("bootstorm")
out = make_tmpdir("bootstorm-")
suite.cleanup_dir(out)
state = {}


def results():
    return state["results"]


TRACES = ("synthetic", "real")


def storm(config, trace="synthetic"):
    entry = results()["traces"][trace]["configs"][config]
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


@suite.step("the table is printed and written to results.md, with both traces and the targets")
def _():
    text = state["output"]
    assert "| trace | config | N | makespan s |" in text, text
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    for trace in TRACES:
        for config in ("hdd", "hdd-wb", "hdd-wb-mem", "none", "copy", "hot", "hot-ram",
                       "copy-ram", "floor"):
            assert "| %s | %s | " % (trace, config) in md, (trace, config, md)
    assert "zero primary-tier reads" in md and "cp --sparse=always" in md, md
    assert "new template -> first storm-proof instance" in md, md
    statuses = {t["status"] for t in results()["targets"]}
    assert statuses <= {"PASS", "FAIL", "SKIP"}, statuses


@suite.step("the real trace: its figures are reported (reads, distinct bytes, fraction)")
def _():
    t = results()["traces"]["real"]["trace"]
    full = t["full_trace"]
    assert t["reads"] == min(300, full["reads"]), t
    assert 0 < t["distinct_bytes"] <= t["read_bytes"], t
    assert 0 < full["fraction_of_virtual"] < 0.5, full
    assert full["distinct_bytes"] < full["data_bytes"], full
    assert os.path.exists(t["trace_file"]), t
    assert "trace real: %d reads" % t["reads"] in state["output"]


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


@suite.step("hdd and none read the template on the throttled HDD tier, for both traces")
def _():
    meta = results()["meta"]
    for trace in TRACES:
        reads = results()["traces"][trace]["trace"]
        for config in ("hdd", "none"):
            r = storm(config, trace)
            assert r["hdd_reads"] > 0 and r["hdd_bytes"] >= reads["distinct_bytes"], \
                (trace, config, r)
            assert 0 < r["p50"] <= r["p95"] <= r["makespan"] + 1e-6, (config, r)
        # The throttle acts: 2 x the trace's IOs at most ~200/s (+ a burst allowance).
        none = storm("none", trace)
        assert none["makespan"] >= 0.5 * none["hdd_reads"] / meta["iops"], none
        assert none["ssd_reads"] > 0, none


@suite.step("the page cache: writeback shares the template's blocks between the replays; "
            "under a memory cap it runs too")
def _():
    for trace in TRACES:
        hdd, wb, mem = storm("hdd", trace), storm("hdd-wb", trace), storm("hdd-wb-mem", trace)
        assert wb["cache"] == "writeback" and hdd["cache"] == "none", (wb, hdd)
        # fewer IOs on the HDD (readahead may read more bytes than O_DIRECT)
        assert wb["hdd_reads"] < hdd["hdd_reads"], (trace, wb["hdd_reads"], hdd["hdd_reads"])
        assert mem["mem_limit"] and mem["hdd_bytes"] > 0, mem


@suite.step("copy reads nothing from the HDD; the CPU floor reads no tier at all")
def _():
    for trace in TRACES:
        entry = results()["traces"][trace]["configs"]["copy"]
        if entry["status"].startswith("skipped"):
            assert entry["status"] == "skipped: replica policy not available", entry
            print("# copy: %s" % entry["status"])
        else:
            r = storm("copy", trace)
            assert r["hdd_reads"] == 0 and r["hdd_bytes"] == 0, r
            assert r["ssd_bytes"] > 0, r
            rep = entry["replica"]
            assert rep["replica_in_secondary"], rep
            assert rep["replica_s"] > 0 and rep["cp_s"] > 0, rep
            assert entry["fast_tier_bytes"] == rep["replica_allocated"] > 0, entry
            assert entry["storm_proof_after_s"] == rep["first_vol_create_s"], entry
        floor = storm("floor", trace)
        assert floor["hdd_bytes"] == 0 and floor["ssd_bytes"] == 0, floor


@suite.step("hot and hot-ram: learned from a copy-on-read boot, the storm reads the hot "
            "replica and, past the template's metadata, not the HDD")
def _():
    for trace in TRACES:
        distinct = results()["traces"][trace]["trace"]["distinct_bytes"]
        for config in ("hot", "hot-ram"):
            entry = results()["traces"][trace]["configs"][config]
            rep = entry["replica"]
            assert rep["learning_boot_s"] > 0 and rep["refresh_s"] > 0, rep
            assert rep["storm_proof_after_s"] >= rep["learning_boot_s"] + rep["refresh_s"], rep
            # every cluster the boot read, and little more
            assert distinct <= rep["replica_allocated"] <= 2 * distinct + 4 * MiB, (rep, distinct)
            assert entry["fast_tier_bytes"] == rep["replica_allocated"], entry
            r = storm(config, trace)
            # opening the chain reads the template's qcow2 header and tables;
            # no data: a few KiB per instance at most
            assert r["hdd_bytes"] <= r["n"] * 256 * 1024, (trace, config, r)
        hot = storm("hot", trace)
        assert hot["ssd_bytes"] >= distinct, hot
        assert storm("hot-ram", trace)["ssd_bytes"] < distinct, storm("hot-ram", trace)


@suite.step("copy-ram: the full replica in the RAM tier; every target is evaluated")
def _():
    for trace in TRACES:
        entry = results()["traces"][trace]["configs"]["copy-ram"]
        r = storm("copy-ram", trace)
        assert r["hdd_bytes"] == 0 and r["ssd_bytes"] < MiB, r
        assert entry["replica"]["replica"].startswith(results()["meta"]["ram_dir"]), entry
    hot = [t for t in results()["targets"] if "hot" in t["name"]]
    assert len(hot) == 2 * 8 and all(t["status"] in ("PASS", "FAIL") for t in hot), hot


@suite.step("nothing is left behind: pools, loop devices, mounts, cgroup, work directory")
def _():
    meta = results()["meta"]
    pools = run(["virsh", "-q", "pool-list", "--all", "--name"])[1].split()
    assert not set(meta["pools"]) & set(pools), pools
    assert not os.path.exists(meta["workdir"]), meta["workdir"]
    assert not os.path.exists(meta["cgroup_path"]), meta["cgroup_path"]
    assert not os.path.exists(meta["memory_cgroup_path"]), meta["memory_cgroup_path"]
    assert not os.path.exists(meta["ram_dir"]), meta["ram_dir"]
    loops = run(["losetup", "-a"])[1]
    assert meta["workdir"] not in loops, loops
    with open("/proc/mounts") as f:
        assert meta["workdir"] not in f.read()


suite.finish()
