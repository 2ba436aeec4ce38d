"""The boot-storm benchmark keeps working: bench/bootstorm/run --quick.

Runs the small variant (N = 2, a tiny synthetic template and trace, the
first reads of the real guest's boot trace, small loop-device filesystems)
into a temporary directory and checks that it wrote the table and the
plots, that the numbers are sane (a throttled HDD is read in the
configurations that read the template there, less with the page cache,
never in the replica one or the CPU floor) and that it left nothing behind:
no pool, loop device, mount, cgroup, RAM directory or work directory. The
first run builds the real guest and records its boot trace (cached).

The benchmark runs once per module (the `quick` fixture, a few minutes on
a loaded machine); each test checks one part of what it reported, and any
one runs alone (it runs the benchmark first):

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_bootstorm.py -k plots
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

import stormpool_client as sp
from stormpool_client import run

RUN = os.path.join(sp.TOP, "bench", "bootstorm", "run")
TEST_TMP = os.path.join(sp.TOP, "_build", "test-tmp")
MiB = 1024 * 1024
TIMEOUT = 2400      # the first run builds the guest image and records its trace
TRACES = ("synthetic", "real")


class QuickRun:
    """What one bench/bootstorm/run --quick printed and wrote."""

    def __init__(self, out, returncode, output, elapsed):
        self.out = out
        self.returncode = returncode
        self.output = output
        self.elapsed = elapsed

    @property
    def results(self):
        """results.json, once the run exited 0."""
        assert self.returncode == 0, "the quick run failed (%s):\n%s" % (
            self.returncode, self.output[-4000:])
        with open(os.path.join(self.out, "results.json")) as f:
            return json.load(f)

    def markdown(self):
        with open(os.path.join(self.out, "results.md")) as f:
            return f.read()

    def storm(self, config, trace="synthetic"):
        """The one storm (N = 2) of @config on @trace, which ran."""
        entry = self.results["traces"][trace]["configs"][config]
        assert entry["status"] == "ok", entry["status"]
        runs = entry["runs"]
        assert [r["n"] for r in runs] == [2], runs
        return runs[0]


@pytest.fixture(scope="module")
def quick(prefix):
    """bench/bootstorm/run --quick, run once for the module into a
    temporary directory (removed at the end)."""
    os.makedirs(TEST_TMP, exist_ok=True)
    out = tempfile.mkdtemp(prefix="spt-bootstorm-", dir=TEST_TMP)
    start = time.monotonic()
    try:
        proc = subprocess.run([RUN, "--quick", "--out", out], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
        returncode, output = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        returncode = "killed after %d s" % TIMEOUT
        output = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) \
            else e.stdout or ""
    elapsed = time.monotonic() - start
    print("# quick run: %.1f s" % elapsed)
    yield QuickRun(out, returncode, output, elapsed)
    shutil.rmtree(out, ignore_errors=True)


def test_quick_run_finishes_in_time_and_exits_0(quick):
    """bench/bootstorm/run --quick finishes within its time and exits 0,
    having written results.json."""
    assert quick.returncode == 0, quick.output[-4000:]
    assert os.path.exists(os.path.join(quick.out, "results.json"))


def test_table_printed_and_written_with_both_traces_and_the_targets(quick):
    """The table is printed and written to results.md, a row for every
    configuration of both traces, with the targets, each PASS, FAIL or
    SKIP."""
    assert "| trace | config | N | makespan s |" in quick.output, quick.output
    md = quick.markdown()
    for trace in TRACES:
        for config in ("hdd", "hdd-wb", "hdd-wb-mem", "none", "copy", "hot", "hot-ram",
                       "copy-ram", "floor"):
            assert "| %s | %s | " % (trace, config) in md, (trace, config, md)
    assert "zero primary-tier reads" in md and "cp --sparse=always" in md, md
    assert "new template -> first storm-proof instance" in md, md
    statuses = {t["status"] for t in quick.results["targets"]}
    assert statuses <= {"PASS", "FAIL", "SKIP"}, statuses


def test_real_trace_figures_are_reported(quick):
    """The real trace's figures are reported: its reads (the first 300 at
    most), distinct bytes, the fraction of the disk the full trace reads."""
    t = quick.results["traces"]["real"]["trace"]
    full = t["full_trace"]
    assert t["reads"] == min(300, full["reads"]), t
    assert 0 < t["distinct_bytes"] <= t["read_bytes"], t
    assert 0 < full["fraction_of_virtual"] < 0.5, full
    assert full["distinct_bytes"] < full["data_bytes"], full
    assert os.path.exists(t["trace_file"]), t
    assert "trace real: %d reads" % t["reads"] in quick.output


def test_png_plots_exist_and_are_referenced(quick):
    """The PNG plots exist, are more than 10 kB, and results.md links them."""
    md = quick.markdown()
    for name in ("makespan.png", "tier_reads.png", "iostat.png"):
        path = os.path.join(quick.out, name)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        assert os.path.getsize(path) > 10000, name
        assert "](%s)" % name in md, name


def test_hdd_and_none_read_the_template_on_the_throttled_hdd(quick):
    """hdd and none read the template on the throttled HDD tier, at least
    the trace's distinct bytes, for both traces; the throttle holds."""
    results = quick.results
    meta = results["meta"]
    for trace in TRACES:
        reads = results["traces"][trace]["trace"]
        for config in ("hdd", "none"):
            r = quick.storm(config, trace)
            assert r["hdd_reads"] > 0 and r["hdd_bytes"] >= reads["distinct_bytes"], \
                (trace, config, r)
            assert 0 < r["p50"] <= r["p95"] <= r["makespan"] + 1e-6, (config, r)
        # The throttle acts: 2 x the trace's IOs at most ~200/s (+ a burst allowance).
        none = quick.storm("none", trace)
        assert none["makespan"] >= 0.5 * none["hdd_reads"] / meta["iops"], none
        assert none["ssd_reads"] > 0, none


def test_page_cache_shares_the_templates_blocks(quick):
    """With writeback the page cache shares the template's blocks between
    the replays (fewer HDD reads than cache=none); under a memory cap it
    runs too."""
    for trace in TRACES:
        hdd, wb = quick.storm("hdd", trace), quick.storm("hdd-wb", trace)
        mem = quick.storm("hdd-wb-mem", trace)
        assert wb["cache"] == "writeback" and hdd["cache"] == "none", (wb, hdd)
        # fewer IOs on the HDD (readahead may read more bytes than O_DIRECT)
        assert wb["hdd_reads"] < hdd["hdd_reads"], (trace, wb["hdd_reads"], hdd["hdd_reads"])
        assert mem["mem_limit"] and mem["hdd_bytes"] > 0, mem


def test_copy_reads_nothing_from_the_hdd_and_the_floor_no_tier(quick):
    """copy reads nothing from the HDD (its replica in the secondary tier,
    timed against cp); the CPU floor reads no tier at all."""
    results = quick.results
    for trace in TRACES:
        entry = results["traces"][trace]["configs"]["copy"]
        if entry["status"].startswith("skipped"):
            assert entry["status"] == "skipped: replica policy not available", entry
            print("# copy: %s" % entry["status"])
        else:
            r = quick.storm("copy", trace)
            assert r["hdd_reads"] == 0 and r["hdd_bytes"] == 0, r
            assert r["ssd_bytes"] > 0, r
            rep = entry["replica"]
            assert rep["replica_in_secondary"], rep
            assert rep["replica_s"] > 0 and rep["cp_s"] > 0, rep
            assert entry["fast_tier_bytes"] == rep["replica_allocated"] > 0, entry
            assert entry["storm_proof_after_s"] == rep["first_vol_create_s"], entry
        floor = quick.storm("floor", trace)
        assert floor["hdd_bytes"] == 0 and floor["ssd_bytes"] == 0, floor


def test_hot_replicas_are_learned_and_spare_the_hdd(quick):
    """hot and hot-ram: learned from a copy-on-read boot, the storm reads
    the hot replica and, past the template's metadata, not the HDD."""
    results = quick.results
    for trace in TRACES:
        distinct = results["traces"][trace]["trace"]["distinct_bytes"]
        for config in ("hot", "hot-ram"):
            entry = results["traces"][trace]["configs"][config]
            rep = entry["replica"]
            assert rep["learning_boot_s"] > 0 and rep["refresh_s"] > 0, rep
            assert rep["storm_proof_after_s"] >= rep["learning_boot_s"] + rep["refresh_s"], rep
            # every cluster the boot read, and little more
            assert distinct <= rep["replica_allocated"] <= 2 * distinct + 4 * MiB, (rep, distinct)
            assert entry["fast_tier_bytes"] == rep["replica_allocated"], entry
            r = quick.storm(config, trace)
            # opening the chain reads the template's qcow2 header and tables;
            # no data: a few KiB per instance at most
            assert r["hdd_bytes"] <= r["n"] * 256 * 1024, (trace, config, r)
        hot = quick.storm("hot", trace)
        assert hot["ssd_bytes"] >= distinct, hot
        assert quick.storm("hot-ram", trace)["ssd_bytes"] < distinct, \
            quick.storm("hot-ram", trace)


def test_copy_ram_and_every_target_evaluated(quick):
    """copy-ram: the full replica in the RAM tier, nothing read from the
    HDD; every hot target is evaluated (PASS or FAIL)."""
    results = quick.results
    for trace in TRACES:
        entry = results["traces"][trace]["configs"]["copy-ram"]
        r = quick.storm("copy-ram", trace)
        assert r["hdd_bytes"] == 0 and r["ssd_bytes"] < MiB, r
        assert entry["replica"]["replica"].startswith(results["meta"]["ram_dir"]), entry
    hot = [t for t in results["targets"] if "hot" in t["name"]]
    assert len(hot) == 2 * 8 and all(t["status"] in ("PASS", "FAIL") for t in hot), hot


def test_nothing_is_left_behind(quick):
    """No pool, loop device, mount, cgroup, RAM directory or work directory
    of the run is left."""
    meta = quick.results["meta"]
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
