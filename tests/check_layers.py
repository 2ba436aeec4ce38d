#!/usr/bin/python3
"""The core's folders are layers: a file includes only from its own layer
and the ones before it, the module only the core's interface.

    util -> fs -> image -> replica -> pool -> ops

include/stormpool/types.h and error.h are for every layer; pool.h is the
pool layer's, for the module. Prints TAP: one test per source file.
"""

import os
import re
import sys

LAYERS = ["util", "fs", "image", "replica", "pool", "ops"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
PUBLIC = {"stormpool/types.h": "util", "stormpool/error.h": "util",
          "stormpool/pool.h": "pool"}


def layer_of(header, own_dir):
    """The layer a quoted include belongs to, or None for a file of the
    including file's own folder."""
    if header in PUBLIC:
        return PUBLIC[header]
    top = header.split("/", 1)[0]
    if "/" in header and top in LAYERS:
        return top
    if os.path.exists(os.path.join(own_dir, header)):
        return None
    return "unknown"


def problems_of(path, layer, rank):
    with open(path) as f:
        text = f.read()
    found = []
    for header in INCLUDE.findall(text):
        other = layer_of(header, os.path.dirname(path))
        if other is None:
            continue
        if layer == "module":
            # libvirt's own headers are the module's business
            if header.split("/", 1)[0] in LAYERS:
                found.append("the module includes the core's %s" % header)
        elif other == "unknown" or LAYERS.index(other) > rank:
            found.append("%s layer includes %s (%s)" % (layer, header, other))
    return found


def main(top):
    cases = []
    for layer in LAYERS:
        folder = os.path.join(top, "core", layer)
        for name in sorted(os.listdir(folder)):
            if name.endswith((".c", ".h")):
                cases.append((os.path.join(folder, name), layer, LAYERS.index(layer)))
    module = os.path.join(top, "module")
    for name in sorted(os.listdir(module)):
        if name.endswith((".c", ".h")):
            cases.append((os.path.join(module, name), "module", len(LAYERS)))
    print("1..%d" % len(cases))
    failed = 0
    for number, (path, layer, rank) in enumerate(cases, 1):
        problems = problems_of(path, layer, rank)
        rel = os.path.relpath(path, top)
        if problems:
            failed += 1
            print("not ok %d - %s" % (number, rel))
            for problem in problems:
                print("# %s" % problem)
        else:
            print("ok %d - %s" % (number, rel))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
