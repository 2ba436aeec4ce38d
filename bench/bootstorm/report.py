"""results.md, results.json and the PNG plots of a boot-storm run."""

import json
import os

MiB = 1024 * 1024
COLORS = {"hdd": "tab:red", "none": "tab:orange", "copy": "tab:green"}
PLOTS = [
    ("makespan.png", "makespan and p95 boot time vs N"),
    ("tier_reads.png", "bytes and IOs read per tier vs N"),
    ("iostat.png", "HDD and SSD IOPS and MB/s during the storm (like the seed's iostat charts)"),
]


def write(results, out):
    """Write every output file into @out; return the text to print."""
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    plots = make_plots(results, out)
    text = summary(results)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(markdown(results, text, plots))
    return text + "\nplots: %s\n" % ", ".join(os.path.join(out, p) for p in plots)


def storm_table(results):
    lines = ["| config | N | makespan s | p50 s | p95 s | HDD reads | HDD MiB | SSD reads | SSD MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for config, entry in results["configs"].items():
        if entry["status"] != "ok":
            lines.append("| %s | – | %s | | | | | | |" % (config, entry["status"]))
            continue
        for r in entry["runs"]:
            lines.append("| %s | %d | %.2f | %.2f | %.2f | %d | %.1f | %d | %.1f |" % (
                config, r["n"], r["makespan"], r["p50"], r["p95"], r["hdd_reads"],
                r["hdd_bytes"] / MiB, r["ssd_reads"], r["ssd_bytes"] / MiB))
    return lines


def replica_table(results):
    rep = results.get("replica")
    if not rep:
        return ["replica creation: %s" % results["configs"]["copy"]["status"]]
    lines = ["| copy of the template HDD -> SSD (%.0f MiB of data) | seconds | MB/s |"
             % (rep["data_bytes"] / MiB),
             "|---|---:|---:|",
             "| replica (first vol-create %.2f s - overlay-only vol-create %.2f s) | %.2f | %.0f |"
             % (rep["first_vol_create_s"], rep["overlay_vol_create_s"], rep["replica_s"],
                rep["replica_MBps"]),
             "| cp --sparse=always + fsync | %.2f | %.0f |" % (rep["cp_s"], rep["cp_MBps"]),
             "",
             "replica/cp throughput: %.0f%%; replica: %s (%s MiB allocated)"
             % (100 * rep["ratio"], rep["replica"],
                "%.0f" % (rep["replica_allocated"] / MiB) if rep["replica_allocated"] else "?")]
    ref = results.get("reflink") or {}
    if ref.get("status") == "ok":
        lines += ["",
                  "| one XFS (reflink=1), both tiers on it | seconds | new space MiB |",
                  "|---|---:|---:|",
                  "| replica (policy copy) | %.3f | %.1f |" % (ref["replica_s"],
                                                           ref["space_used_bytes"] / MiB),
                  "| cp --reflink=never --sparse=always + fsync | %.2f | |" % ref["cp_never_s"],
                  "| cp --reflink=always + fsync | %.3f | |" % ref["cp_always_s"]]
    else:
        lines += ["", "reflink variant: %s" % ref.get("status", "not run")]
    return lines


def target_lines(results):
    return ["%s %s: %s" % (t["status"], t["name"], t["detail"]) for t in results["targets"]]


def summary(results):
    meta = results["meta"]
    head = ("boot storm: HDD tier throttled to %d read IOPS, %.0f MB/s (cgroup %s); "
            "trace %d reads, %.1f MiB per instance; %.0f s"
            % (meta["iops"], meta["bps"] / 1e6, meta["cgroup"], meta["trace"]["reads"],
               meta["trace"]["read_bytes"] / MiB, meta["elapsed_s"]))
    return "\n".join([head, ""] + storm_table(results) + [""] + replica_table(results) +
                     [""] + target_lines(results)) + "\n"


def markdown(results, text, plots):
    meta = results["meta"]
    tr = meta["trace"]
    phases = ", ".join("%s %d reads / %.1f MiB" % (k, v["reads"], v["bytes"] / MiB)
                       for k, v in tr["phases"].items())
    sizes = ", ".join("%d KiB ×%d" % (int(k) // 1024, v) for k, v in tr["userspace_sizes"].items())
    out = ["# Boot-storm benchmark results", "",
           "`bench/bootstorm/run%s --n %s` on %s — kernel %s, %s, %d CPUs, loop direct I/O %s."
           % (" --quick" if meta["quick"] else "", ",".join(map(str, meta["ns"])), meta["date"],
              meta["kernel"], meta["qemu"], meta["cpus"], meta["loop_direct_io"]), "",
           "Template: %d MiB virtual, %d MiB of data in %d scattered extents. Trace (%s, seed %d): "
           "%d reads, %.1f MiB per instance — %s; userspace sizes %s."
           % (tr["virtual_size"] // MiB, tr["data_bytes"] // MiB, tr["extents"], tr["profile"],
              tr["seed"], tr["reads"], tr["read_bytes"] / MiB, phases, sizes), "",
           "```", text.rstrip(), "```", "", "## Plots", ""]
    for name, title in PLOTS:
        if name in plots:
            out.append("* %s: ![%s](%s)" % (title, title, name))
    return "\n".join(out) + "\n"


# --- plots -------------------------------------------------------------------

def ok_configs(results):
    return [(c, e) for c, e in results["configs"].items() if e["status"] == "ok" and e["runs"]]


def make_plots(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    configs = ok_configs(results)
    if not configs:
        return []
    made = []
    for name, func in (("makespan.png", plot_makespan), ("tier_reads.png", plot_tier_reads),
                       ("iostat.png", plot_iostat)):
        fig = func(plt, results, configs)
        fig.savefig(os.path.join(out, name), dpi=100)
        plt.close(fig)
        made.append(name)
    return made


def plot_makespan(plt, results, configs):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for config, entry in configs:
        ns = [r["n"] for r in entry["runs"]]
        ax.plot(ns, [r["makespan"] for r in entry["runs"]], "o-", color=COLORS[config],
                label="%s: makespan" % entry["label"])
        ax.plot(ns, [r["p95"] for r in entry["runs"]], "x:", color=COLORS[config],
                label="%s: p95 boot" % entry["label"])
    ax.set_xticks(sorted({r["n"] for _, e in configs for r in e["runs"]}))
    ax.set_xlabel("instances booting at once (N)")
    ax.set_ylabel("seconds (log)")
    ax.set_yscale("log")
    ax.set_title("Boot storm: time until all N instances have booted")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_tier_reads(plt, results, configs):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for config, entry in configs:
        ns = [r["n"] for r in entry["runs"]]
        for ax, key, scale in ((axes[0], "bytes", MiB), (axes[1], "reads", 1)):
            ax.plot(ns, [r["hdd_" + key] / scale for r in entry["runs"]], "o-",
                    color=COLORS[config], label="%s: HDD" % entry["label"])
            ax.plot(ns, [r["ssd_" + key] / scale for r in entry["runs"]], "s--",
                    color=COLORS[config], alpha=0.6, label="%s: SSD" % entry["label"])
    axes[0].set_ylabel("MiB read during the storm")
    axes[1].set_ylabel("read IOs during the storm")
    for ax in axes:
        ax.set_xlabel("N")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    ns = sorted({r["n"] for _, e in configs for r in e["runs"]})
    for ax in axes:
        ax.set_xticks(ns)
    fig.suptitle("Reads per tier (/sys/block/loopN/stat)")
    fig.tight_layout()
    return fig


def storm_to_show(entry, ns):
    by_n = {r["n"]: r for r in entry["runs"]}
    return by_n.get(20) or by_n[max(by_n)]


def plot_iostat(plt, results, configs):
    fig, axes = plt.subplots(len(configs), 1, figsize=(8, 2.8 * len(configs)), squeeze=False)
    for ax, (config, entry) in zip(axes[:, 0], configs):
        run = storm_to_show(entry, results["meta"]["ns"])
        series = run["series"]
        edges = [t for t, _ in series]
        rates = {"hdd_iops": [], "hdd_mbs": [], "ssd_iops": [], "ssd_mbs": []}
        for (t0, s0), (t1, s1) in zip(series, series[1:]):
            dt = max(t1 - t0, 1e-6)
            rates["hdd_iops"].append((s1[0][0] - s0[0][0]) / dt)
            rates["hdd_mbs"].append((s1[0][1] - s0[0][1]) / 1e6 / dt)
            rates["ssd_iops"].append((s1[1][0] - s0[1][0]) / dt)
            rates["ssd_mbs"].append((s1[1][1] - s0[1][1]) / 1e6 / dt)
        ax.stairs(rates["hdd_iops"], edges, color="red", linewidth=2, label="HDD IO requests/s")
        ax.stairs(rates["ssd_iops"], edges, color="darkorange", linestyle="--",
                  label="SSD IO requests/s")
        ax.set_xlim(0, edges[-1])
        ax.set_ylabel("IO/s")
        ax2 = ax.twinx()
        ax2.stairs(rates["hdd_mbs"], edges, color="blue", linewidth=2, label="HDD MB/s")
        ax2.stairs(rates["ssd_mbs"], edges, color="deepskyblue", linestyle="--",
                   label="SSD MB/s")
        ax2.set_ylabel("MB/s")
        ax.set_title("%s, N=%d: makespan %.2f s" % (entry["label"], run["n"], run["makespan"]),
                     fontsize=10)
        ax.grid(True, alpha=0.3)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the storm started (0.5 s samples)")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    # Render results.md and the plots again from a results directory's results.json.
    import sys
    with open(os.path.join(sys.argv[1], "results.json")) as f:
        print(write(json.load(f), sys.argv[1]))
