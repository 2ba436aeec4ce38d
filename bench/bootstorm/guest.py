"""The real guest (tools/build-guest-image) and its boot trace.

A boot trace is recorded from a real boot of the template: QEMU (TCG) boots
an empty qcow2 overlay of it with its block layer's trace points
blk_co_preadv and blk_co_pwritev enabled, until the guest prints its ready
marker on the serial console. The guest's read requests, in order, are
what its disk was asked for; those that fall on clusters the guest had
already written are served by the overlay and dropped, the rest is what a
boot reads from the template (the `real` trace of bench/bootstorm).

    guest.py boot TEMPLATE           boot once, print the boot time
    guest.py record TEMPLATE TRACE   record the boot trace into TRACE
    guest.py describe TRACE          the trace's figures

The trace file is text: comment lines (#) with how it was made, then one
"OFFSET LENGTH" line per read request, in the order the guest made them.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(TOP, "tools", "build-guest-image")
MARKER = "STORMPOOL-GUEST-READY"
BOOT_TIMEOUT = 600
CLUSTER = 65536               # the overlay's cluster size (qemu-img's default)
TRACE_NAME = "boot-trace.txt"
TRACE_LINE = re.compile(r"(blk_co_preadv|blk_co_pwritev) blk (\S+) bs \S+ "
                        r"offset (\d+) bytes (\d+)")


def template_path():
    """The cached guest template, built first if needed (as root)."""
    return subprocess.run([BUILD], stdout=subprocess.PIPE, text=True,
                          check=True).stdout.strip()


def qemu_argv(disk, console, extra=()):
    """A small TCG guest whose only disk is @disk, serial console to a file."""
    return ["qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "512", "-smp", "1",
            "-nodefaults", "-display", "none", "-no-user-config",
            "-serial", "file:" + console,
            "-drive", "file=%s,if=virtio,format=qcow2,cache=none" % disk] + list(extra)


def boot(disk, workdir, extra=(), timeout=BOOT_TIMEOUT):
    """Boot @disk until the ready marker; returns (seconds, console text).
    QEMU is stopped right after the marker (the guest synced its writes)."""
    console = os.path.join(workdir, "console.log")
    open(console, "w").close()
    start = time.monotonic()
    proc = subprocess.Popen(qemu_argv(disk, console, extra), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while True:
            with open(console, errors="replace") as f:
                text = f.read()
            if MARKER in text:
                seconds = time.monotonic() - start
                break
            if proc.poll() is not None:
                raise RuntimeError("QEMU exited (%d) before the ready marker: %s\n%s"
                                   % (proc.returncode, proc.stdout.read().decode()[-2000:],
                                      text[-3000:]))
            if time.monotonic() - start > timeout:
                raise RuntimeError("no ready marker after %d s; console:\n%s"
                                   % (timeout, text[-3000:]))
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait()
    return seconds, text


def overlay(template, path):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", template, "-F", "qcow2",
                    path], check=True)


def template_reads(events):
    """The reads of @events [(kind, offset, length)] that reach the template:
    a read is dropped where it lies on clusters the guest wrote before it,
    split where it covers some."""
    written = set()
    reads = []
    for kind, offset, length in events:
        first, last = offset // CLUSTER, (offset + length - 1) // CLUSTER
        if kind == "blk_co_pwritev":
            written.update(range(first, last + 1))
            continue
        start = None
        for cluster in range(first, last + 1):
            lo = max(offset, cluster * CLUSTER)
            hi = min(offset + length, (cluster + 1) * CLUSTER)
            if cluster in written:
                if start is not None:
                    reads.append((start, lo - start))
                    start = None
            elif start is None:
                start = lo
            if cluster == last and start is not None:
                reads.append((start, hi - start))
    return reads


def parse_qemu_trace(text):
    """(kind, offset, length) of the guest disk's requests, in order. The
    guest has one disk; the firmware and the guest use the same backend."""
    events = []
    for line in text.splitlines():
        m = TRACE_LINE.search(line)
        if m and int(m.group(4)) > 0:
            events.append((m.group(1), int(m.group(3)), int(m.group(4))))
    return events


def record(template, out):
    """Boot an overlay of @template with the block trace points on; write
    the reads that reached the template to @out (atomically)."""
    with tempfile.TemporaryDirectory(prefix="stormpool-trace-") as work:
        disk = os.path.join(work, "overlay.qcow2")
        overlay(template, disk)
        qtrace = os.path.join(work, "qemu-trace.log")
        seconds, _ = boot(disk, work, ["-trace", "enable=blk_co_preadv",
                                       "-trace", "enable=blk_co_pwritev", "-D", qtrace])
        with open(qtrace, errors="replace") as f:
            events = parse_qemu_trace(f.read())
    reads = template_reads(events)
    if not reads:
        raise RuntimeError("the boot trace of %s holds no read" % template)
    tmp = out + ".tmp-%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write("# boot trace of %s\n" % template)
        f.write("# recorded by bench/bootstorm/guest.py: QEMU trace points blk_co_preadv/"
                "blk_co_pwritev, TCG boot to the ready marker in %.1f s\n" % seconds)
        f.write("# %d guest requests, %d reads reach the template; OFFSET LENGTH per read\n"
                % (len(events), len(reads)))
        for offset, length in reads:
            f.write("%d %d\n" % (offset, length))
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, out)
    return seconds


def load(path):
    reads = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            offset, length = line.split()
            reads.append((int(offset), int(length)))
    return reads


def distinct_bytes(reads):
    merged = []
    for offset, length in sorted(reads):
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return sum(hi - lo for lo, hi in merged)


def describe(reads, template):
    """The trace's figures against the template's virtual size and data."""
    info = image_info(template)
    distinct = distinct_bytes(reads)
    return {
        "profile": "real",
        "reads": len(reads),
        "read_bytes": sum(length for _, length in reads),
        "distinct_bytes": distinct,
        "virtual_size": info["virtual-size"],
        "data_bytes": info["data"],
        "fraction_of_virtual": distinct / info["virtual-size"],
        "fraction_of_data": distinct / info["data"] if info["data"] else 0.0,
    }


def image_info(path):
    """Virtual size and bytes of data (allocated guest ranges) of an image."""
    import json
    out = subprocess.run(["qemu-img", "map", "-U", "--output=json", path],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    data = sum(e["length"] for e in json.loads(out) if e.get("data"))
    size = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                                     stdout=subprocess.PIPE, text=True,
                                     check=True).stdout)["virtual-size"]
    return {"virtual-size": size, "data": data}


def cached_trace(template):
    """The boot trace of the cached guest template, recorded once and kept
    beside it (the cache directory is keyed by the image's build inputs)."""
    path = os.path.join(os.path.dirname(template), TRACE_NAME)
    if not os.path.exists(path):
        record(template, path)
    return path


def print_figures(fig):
    MiB = 1024 * 1024
    print("real boot trace: %d reads, %.1f MiB requested, %.1f MiB distinct; "
          "%.2f%% of the template's %d MiB virtual size, %.1f%% of its %.1f MiB of data"
          % (fig["reads"], fig["read_bytes"] / MiB, fig["distinct_bytes"] / MiB,
             100 * fig["fraction_of_virtual"], fig["virtual_size"] // MiB,
             100 * fig["fraction_of_data"], fig["data_bytes"] / MiB))


def main(argv):
    if len(argv) >= 2 and argv[0] == "boot":
        with tempfile.TemporaryDirectory(prefix="stormpool-boot-") as work:
            disk = os.path.join(work, "overlay.qcow2")
            overlay(argv[1], disk)
            seconds, text = boot(disk, work)
        print(text.strip().splitlines()[-1])
        print("booted to the ready marker in %.1f s (TCG)" % seconds)
    elif len(argv) == 3 and argv[0] == "record":
        seconds = record(argv[1], argv[2])
        print("recorded %s (boot %.1f s)" % (argv[2], seconds))
        print_figures(describe(load(argv[2]), argv[1]))
    elif len(argv) == 3 and argv[0] == "describe":
        print_figures(describe(load(argv[1]), argv[2]))
    else:
        sys.exit("usage: guest.py boot TEMPLATE | record TEMPLATE TRACE | describe TRACE TEMPLATE")


if __name__ == "__main__":
    main(sys.argv[1:])
