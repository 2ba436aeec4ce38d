"""Boot one host's desktops at once: run inside a host of tools/cluster-env
by bench/bench_cluster.py.

    cluster_replay.py COMMANDS-FILE IMAGE...

replays the qemu-io commands of COMMANDS-FILE (one per line: the boot
trace's reads) on every IMAGE at the same moment, each in its own
read-only qemu-io with cache=none (O_DIRECT, as libvirt's default for
these disks: every read the page cache does not hide), and prints, as
JSON, each replay's seconds and the makespan. Exit status 1 if a replay
failed (its output is printed on stderr).
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstorm"))
from bootstorm import replay_argv  # noqa: E402


def main(argv):
    with open(argv[1]) as f:
        commands = [line.strip() for line in f if line.strip()]
    args = []
    for command in commands:
        args += ["-c", command]
    start = time.monotonic()
    procs = [(image, subprocess.Popen(replay_argv(args, image), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
             for image in argv[2:]]
    seconds, failed = [], False
    for image, proc in procs:
        out = proc.communicate()[0]
        seconds.append(time.monotonic() - start)
        if proc.returncode != 0 or "error" in out.lower() or "failed" in out:
            sys.stderr.write("replay on %s failed (exit %d):\n%s\n" % (image, proc.returncode, out))
            failed = True
    print(json.dumps({"seconds": seconds, "makespan": time.monotonic() - start}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
