"""The template's data layout and the synthetic boot trace, both deterministic.

A profile fixes the template's virtual size and where its data lies; the same
profile and seed always give the same template and the same trace, on any
machine. The shape (see README.md):

  bootloader   1 MiB at offset 0; the trace reads its first 4 KiB, then a few
               4-64 KiB pieces of it
  kernel+initrd  one contiguous region (40 MiB in the full profile) read
               front to back in 512 KiB requests
  userspace    many small reads (4-64 KiB, mostly 4-16 KiB) scattered over
               the rest of the data, a quarter of them starting a short
               sequential run (2-6 requests) like a file read with readahead

The rest of the template's data is a few hundred 64 KiB - 1 MiB extents at
pseudo-random 1 MiB slots, written in shuffled order so that the qcow2
clusters of neighbouring guest offsets are scattered in the image file.
"""

import random
from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

SMALL_SIZES = [4 * KiB, 8 * KiB, 16 * KiB, 32 * KiB, 64 * KiB]
SMALL_WEIGHTS = [35, 20, 20, 15, 10]


@dataclass(frozen=True)
class Profile:
    name: str
    virtual_size: int       # bytes, the template's (and every instance's) size
    kernel_offset: int      # kernel+initrd region
    kernel_size: int
    kernel_request: int     # request size of the sequential phase
    extents: int            # scattered data extents (one per 1 MiB slot)
    file_reads: int         # userspace "file reads" (each 1 or 2-6 requests)
    bootloader_reads: int
    seed: int = 20130520


FULL = Profile("full", virtual_size=2 * GiB, kernel_offset=16 * MiB,
               kernel_size=40 * MiB, kernel_request=512 * KiB, extents=480,
               file_reads=170, bootloader_reads=8)
QUICK = Profile("quick", virtual_size=128 * MiB, kernel_offset=8 * MiB,
                kernel_size=4 * MiB, kernel_request=512 * KiB, extents=32,
                file_reads=30, bootloader_reads=4)

SLOT = MiB


def layout(p):
    """Data extents of the template as (offset, length), in write order."""
    rng = random.Random(p.seed)
    reserved = set(range(0, 1))                       # bootloader slot
    first = p.kernel_offset // SLOT
    reserved.update(range(first, first + p.kernel_size // SLOT))
    free = [s for s in range(p.virtual_size // SLOT) if s not in reserved]
    slots = rng.sample(free, p.extents)
    extents = [(s * SLOT, rng.randrange(1, 17) * 64 * KiB) for s in slots]
    rng.shuffle(extents)
    return [(0, SLOT), (p.kernel_offset, p.kernel_size)] + extents


def write_commands(p):
    """qemu-io commands that fill a fresh template with the layout's data."""
    return ["write -q -P 0x%02x %d %d" % (i % 255 + 1, off, length)
            for i, (off, length) in enumerate(layout(p))]


def boot_trace(p):
    """The boot trace: a list of (phase, offset, length) reads."""
    rng = random.Random(p.seed + 1)
    reads = [("bootloader", 0, 4 * KiB)]
    for _ in range(p.bootloader_reads - 1):
        size = rng.choices(SMALL_SIZES, SMALL_WEIGHTS)[0]
        reads.append(("bootloader", rng.randrange(0, (SLOT - size) // (4 * KiB)) * 4 * KiB, size))
    for off in range(p.kernel_offset, p.kernel_offset + p.kernel_size, p.kernel_request):
        reads.append(("kernel+initrd", off, p.kernel_request))
    data = layout(p)[2:]
    for _ in range(p.file_reads):
        ext_off, ext_len = rng.choice(data)
        size = rng.choices(SMALL_SIZES, SMALL_WEIGHTS)[0]
        run = rng.randint(2, 6) if rng.random() < 0.25 else 1
        off = ext_off + rng.randrange(0, ext_len // (4 * KiB)) * 4 * KiB
        for _ in range(run):
            length = min(size, ext_off + ext_len - off)
            if length <= 0:
                break
            reads.append(("userspace", off, length))
            off += length
    return reads


def read_commands(trace):
    return ["read -q %d %d" % (off, length) for _, off, length in trace]


def describe(p, trace):
    """The trace's shape as a dict (for the report)."""
    phases = {}
    for phase, _, length in trace:
        count, total = phases.get(phase, (0, 0))
        phases[phase] = (count + 1, total + length)
    sizes = {}
    for phase, _, length in trace:
        if phase == "userspace":
            sizes[length] = sizes.get(length, 0) + 1
    data = sum(length for _, length in layout(p))
    return {
        "profile": p.name,
        "seed": p.seed,
        "virtual_size": p.virtual_size,
        "data_bytes": data,
        "extents": p.extents,
        "reads": len(trace),
        "read_bytes": sum(length for _, _, length in trace),
        "phases": {k: {"reads": c, "bytes": b} for k, (c, b) in phases.items()},
        "userspace_sizes": {str(k): v for k, v in sorted(sizes.items())},
    }


if __name__ == "__main__":
    import json
    import sys
    prof = QUICK if "--quick" in sys.argv else FULL
    print(json.dumps(describe(prof, boot_trace(prof)), indent=2))
