"""results.md, results.json and the PNG plots of a boot-storm run."""

import json
import os

MiB = 1024 * 1024
COLORS = {"hdd": "tab:red", "hdd-wb": "tab:purple", "hdd-wb-mem": "tab:pink",
          "none": "tab:orange", "copy": "tab:green", "hot": "tab:olive",
          "hot-ram": "tab:cyan", "copy-ram": "tab:blue", "floor": "black"}
PLOTS = [
    ("makespan.png", "makespan vs N, per trace and configuration"),
    ("tier_reads.png", "bytes read from the HDD and SSD tiers vs N"),
    ("iostat.png", "HDD and SSD IOPS and MB/s during the N=20 storm of the real trace "
                   "(like the seed's iostat charts)"),
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
    lines = ["| trace | config | N | makespan s | p50 s | p95 s | HDD reads | HDD MiB "
             "| SSD reads | SSD MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for trace_name, tr in results["traces"].items():
        for config, entry in tr["configs"].items():
            if entry["status"] != "ok":
                lines.append("| %s | %s | – | %s | | | | | | |"
                             % (trace_name, config, entry["status"]))
                continue
            for r in entry["runs"]:
                lines.append("| %s | %s | %d | %.2f | %.2f | %.2f | %d | %.1f | %d | %.1f |" % (
                    trace_name, config, r["n"], r["makespan"], r["p50"], r["p95"],
                    r["hdd_reads"], r["hdd_bytes"] / MiB, r["ssd_reads"], r["ssd_bytes"] / MiB))
    return lines


def per_template_table(results):
    lines = ["| trace | config | fast-tier (or RAM) MiB per template "
             "| new template -> first storm-proof instance |",
             "|---|---|---:|---:|"]
    for trace_name, tr in results["traces"].items():
        for config, entry in tr["configs"].items():
            if entry["status"] != "ok" or "fast_tier_bytes" not in entry:
                continue
            ready = entry.get("storm_proof_after_s")
            fast = entry["fast_tier_bytes"]
            lines.append("| %s | %s | %s | %s |" % (
                trace_name, config, "%.1f" % (fast / MiB) if fast is not None else "?",
                "%.2f s" % ready if ready is not None else
                ("(in RAM before the run)" if config == "floor" else "never storm-proof")))
    return lines


RATIO_CONFIGS = ("hdd", "hdd-wb", "hdd-wb-mem", "none", "copy", "hot", "hot-ram", "copy-ram",
                 "floor")


def ratio_table(results, n=20):
    """Makespans at N relative to the CPU floor and to copy, side by side."""
    lines = ["| trace, N=%d | %s |" % (n, " | ".join(RATIO_CONFIGS)),
             "|---|" + "---:|" * len(RATIO_CONFIGS)]
    for trace_name, tr in results["traces"].items():
        spans = {}
        for config, entry in tr["configs"].items():
            for r in entry.get("runs", []):
                if r["n"] == n:
                    spans[config] = r["makespan"]
        if "floor" not in spans:
            continue
        cells = ["%.2f s (%.1fx)" % (spans[c], spans[c] / spans["floor"]) if c in spans else "–"
                 for c in RATIO_CONFIGS]
        lines.append("| %s: makespan (x CPU floor) | %s |" % (trace_name, " | ".join(cells)))
    return lines if len(lines) > 2 else []


def replica_table(results):
    lines = []
    for trace_name, tr in results["traces"].items():
        rep = tr["configs"].get("copy", {}).get("replica")
        if not rep:
            continue
        lines += ["| %s: copy of the template HDD -> SSD (%.0f MiB of data) | seconds | MB/s |"
                  % (trace_name, rep["data_bytes"] / MiB),
                  "|---|---:|---:|",
                  "| replica (first vol-create %.2f s - overlay-only vol-create %.2f s) | %.2f "
                  "| %.0f |" % (rep["first_vol_create_s"], rep["overlay_vol_create_s"],
                                rep["replica_s"], rep["replica_MBps"]),
                  "| cp --sparse=always + fsync | %.2f | %.0f |" % (rep["cp_s"], rep["cp_MBps"]),
                  ""]
    lines += hot_table(results)
    ref = results.get("reflink") or {}
    if ref.get("status") == "ok":
        lines += ["| one XFS (reflink=1), both tiers on it (%s template) | seconds "
                  "| new space MiB |" % ref["trace"],
                  "|---|---:|---:|",
                  "| replica (policy copy) | %.3f | %.1f |" % (ref["replica_s"],
                                                           ref["space_used_bytes"] / MiB),
                  "| cp --reflink=never --sparse=always + fsync | %.2f | |" % ref["cp_never_s"],
                  "| cp --reflink=always + fsync | %.3f | |" % ref["cp_always_s"]]
    else:
        lines += ["reflink variant: %s" % ref.get("status", "not run")]
    return lines


def hot_table(results):
    """How a new template becomes storm-proof under policy='hot'."""
    lines = []
    for trace_name, tr in results["traces"].items():
        rows = [(c, tr["configs"].get(c, {}).get("replica")) for c in ("hot", "hot-ram")]
        rows = [(c, rep) for c, rep in rows if rep]
        if not rows:
            continue
        lines += ["| %s: a new template under policy='hot' | learner vol-create s "
                  "| copy-on-read boot s | pool-refresh + learning s | first instance s | storm-proof after s "
                  "| hot replica MiB | distinct MiB |" % trace_name,
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for config, rep in rows:
            lines.append("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.1f |" % (
                config, rep["learner_vol_create_s"], rep["learning_boot_s"], rep["refresh_s"],
                rep["first_vol_create_s"], rep["storm_proof_after_s"],
                rep["replica_allocated"] / MiB, rep["distinct_bytes"] / MiB))
        lines.append("")
    return lines


def trace_lines(results):
    lines = []
    for trace_name, tr in results["traces"].items():
        t = tr["trace"]
        if trace_name == "real":
            full = t.get("full_trace", t)
            lines.append("trace real: %d reads, %.1f MiB requested, %.1f MiB distinct = "
                         "%.2f%% of the template's %d MiB (%.1f%% of its %.1f MiB of data)%s"
                         % (t["reads"], t["read_bytes"] / MiB, t["distinct_bytes"] / MiB,
                            100 * t["fraction_of_virtual"], t["virtual_size"] // MiB,
                            100 * t["fraction_of_data"], t["data_bytes"] / MiB,
                            "" if full is t else "; first %d of the %d reads (%.1f MiB "
                            "distinct) of the recorded boot" % (t["reads"], full["reads"],
                                                               full["distinct_bytes"] / MiB)))
        else:
            lines.append("trace synthetic: %d reads, %.1f MiB requested per instance, "
                         "template %d MiB with %.0f MiB of data"
                         % (t["reads"], t["read_bytes"] / MiB, t["virtual_size"] // MiB,
                            t["data_bytes"] / MiB))
    return lines


def target_lines(results):
    return ["%s %s: %s" % (t["status"], t["name"], t["detail"]) for t in results["targets"]]


def summary(results):
    meta = results["meta"]
    head = ("boot storm: HDD %d read IOPS, %.0f MB/s; SSD %d IOPS, %.0f MB/s (blkio cgroup %s); "
            "page cache cap under pressure: replays' own memory + %.0f%% of the distinct bytes; "
            "%.0f s" % (meta["iops"], meta["bps"] / 1e6, meta["ssd_iops"], meta["ssd_bps"] / 1e6,
                        meta["cgroup"], 100 * meta["mem_fraction"], meta["elapsed_s"]))
    return "\n".join([head] + trace_lines(results) + [""] + storm_table(results) + [""] +
                     per_template_table(results) + [""] + ratio_table(results) + [""] +
                     replica_table(results) + [""] + target_lines(results)) + "\n"


def markdown(results, text, plots):
    meta = results["meta"]
    out = ["# Boot-storm benchmark results", "",
           "`bench/bootstorm/run%s --n %s --traces %s` on %s — kernel %s, %s, %d CPUs, "
           "loop direct I/O %s." % (" --quick" if meta["quick"] else "",
                                    ",".join(map(str, meta["ns"])), ",".join(meta["traces"]),
                                    meta["date"], meta["kernel"], meta["qemu"], meta["cpus"],
                                    meta["loop_direct_io"]), "",
           "```", text.rstrip(), "```", "", "## Plots", ""]
    for name, title in PLOTS:
        if name in plots:
            out.append("* %s: ![%s](%s)" % (title, title, name))
    return "\n".join(out) + "\n"


# --- plots -------------------------------------------------------------------

def ok_configs(tr):
    return [(c, e) for c, e in tr["configs"].items() if e["status"] == "ok" and e["runs"]]


def make_plots(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not any(ok_configs(tr) for tr in results["traces"].values()):
        return []
    made = []
    for name, func in (("makespan.png", plot_makespan), ("tier_reads.png", plot_tier_reads),
                       ("iostat.png", plot_iostat)):
        fig = func(plt, results)
        fig.savefig(os.path.join(out, name), dpi=100)
        plt.close(fig)
        made.append(name)
    return made


def plot_makespan(plt, results):
    traces = list(results["traces"].items())
    fig, axes = plt.subplots(1, len(traces), figsize=(7 * len(traces), 4.8), squeeze=False)
    for ax, (trace_name, tr) in zip(axes[0], traces):
        for config, entry in ok_configs(tr):
            ns = [r["n"] for r in entry["runs"]]
            ax.plot(ns, [r["makespan"] for r in entry["runs"]], "o-", color=COLORS[config],
                    label=entry["label"])
        ax.set_xticks(results["meta"]["ns"])
        ax.set_xlabel("instances booting at once (N)")
        ax.set_ylabel("makespan, seconds (log)")
        ax.set_yscale("log")
        ax.set_title("%s trace" % trace_name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Boot storm: time until all N instances have booted")
    fig.tight_layout()
    return fig


def plot_tier_reads(plt, results):
    traces = list(results["traces"].items())
    fig, axes = plt.subplots(1, len(traces), figsize=(7 * len(traces), 4.5), squeeze=False)
    for ax, (trace_name, tr) in zip(axes[0], traces):
        for config, entry in ok_configs(tr):
            ns = [r["n"] for r in entry["runs"]]
            ax.plot(ns, [r["hdd_bytes"] / MiB for r in entry["runs"]], "o-",
                    color=COLORS[config], label="%s: HDD" % config)
            ax.plot(ns, [r["ssd_bytes"] / MiB for r in entry["runs"]], "s--",
                    color=COLORS[config], alpha=0.5, label="%s: SSD" % config)
        ax.set_xticks(results["meta"]["ns"])
        ax.set_xlabel("N")
        ax.set_ylabel("MiB read during the storm")
        ax.set_title("%s trace" % trace_name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("Reads per tier (/sys/block/loopN/stat)")
    fig.tight_layout()
    return fig


def storm_to_show(entry):
    by_n = {r["n"]: r for r in entry["runs"]}
    return by_n.get(20) or by_n[max(by_n)]


def rates(series):
    edges = [t for t, _ in series]
    out = {"hdd_iops": [], "hdd_mbs": [], "ssd_iops": [], "ssd_mbs": []}
    for (t0, s0), (t1, s1) in zip(series, series[1:]):
        dt = max(t1 - t0, 1e-6)
        out["hdd_iops"].append((s1[0][0] - s0[0][0]) / dt)
        out["hdd_mbs"].append((s1[0][1] - s0[0][1]) / 1e6 / dt)
        out["ssd_iops"].append((s1[1][0] - s0[1][0]) / dt)
        out["ssd_mbs"].append((s1[1][1] - s0[1][1]) / 1e6 / dt)
    return edges, out


def plot_iostat(plt, results):
    tr = results["traces"].get("real") or next(iter(results["traces"].values()))
    configs = [(c, e) for c, e in ok_configs(tr) if c != "floor"]
    fig, axes = plt.subplots(len(configs), 1, figsize=(8, 2.6 * len(configs)), squeeze=False)
    for ax, (config, entry) in zip(axes[:, 0], configs):
        run = storm_to_show(entry)
        edges, r = rates(run["series"])
        ax.stairs(r["hdd_iops"], edges, color="red", linewidth=2, label="HDD IO requests/s")
        ax.stairs(r["ssd_iops"], edges, color="darkorange", linestyle="--",
                  label="SSD IO requests/s")
        ax.set_xlim(0, edges[-1])
        ax.set_ylabel("IO/s")
        ax2 = ax.twinx()
        ax2.stairs(r["hdd_mbs"], edges, color="blue", linewidth=2, label="HDD MB/s")
        ax2.stairs(r["ssd_mbs"], edges, color="deepskyblue", linestyle="--", label="SSD MB/s")
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
