"""make bench-cluster, as a smoke run (--quick): it runs on the cluster to
the end, prints a PASS/FAIL line per target, and its figures hold
together (what each configuration must cost the store, whatever the
machine's speed)."""

import json
import os
import subprocess
import sys

import pytest

from cluster import TOP

MiB = 1024 * 1024
TARGETS = 5


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run([sys.executable, "-u", os.path.join(TOP, "bench", "bench_cluster.py"),
                           "--quick", "--json", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    print(proc.stdout)
    assert out.exists(), proc.stdout
    with open(out) as f:
        return proc, json.load(f)


@pytest.mark.time_limit(600)
def test_every_target_has_a_line(quick_run):
    proc, results = quick_run
    lines = [line for line in proc.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(lines) == TARGETS == len(results["targets"]), proc.stdout
    # the run's status is that of its targets
    assert proc.returncode == (1 if any(not t["ok"] for t in results["targets"]) else 0)


def test_copy_hosts_each_read_the_whole_template(quick_run):
    served = quick_run[1]["new_template"]["copy"]["served"]
    # the quick template holds 22 MiB of data: each host copies all of it
    assert all(21 * MiB < b < 24 * MiB for b in served.values()), served


def test_hot_hosts_read_the_hot_set_only(quick_run):
    results = quick_run[1]
    hot, copy = results["new_template"]["hot"]["served"], results["new_template"]["copy"]["served"]
    assert all(b < 0.5 * copy["hosta"] for b in hot.values()), (hot, copy)
    # hosta's hot replica is made from what its learning boot read into its
    # page cache: it reads the store once, like the hosts that did not boot
    assert hot["hosta"] < 1.2 * hot["hostb"], hot


def test_only_the_storm_without_replicas_reads_the_template(quick_run):
    results = quick_run[1]
    storm, distinct = results["storm"], results["distinct_bytes"]
    desktops = 3 * results["desktops_per_host"]
    assert storm["none"]["template_data"] >= desktops * distinct, storm["none"]
    assert storm["copy"]["template_data"] < 4096, storm["copy"]
    assert storm["hot"]["template_data"] < 4096, storm["hot"]


def test_incremental_migration_sends_the_own_data_only(quick_run):
    move = quick_run[1]["migration"]
    assert move["own_allocation"] == 8 * MiB
    assert move["inc"]["disk_bytes"] <= 1.1 * move["own_allocation"], move
    # --copy-storage-all sends the template's 256 MiB as well
    assert move["all"]["sent"] > 256 * MiB > 10 * move["inc"]["sent"], move
