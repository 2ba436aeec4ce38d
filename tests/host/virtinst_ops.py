#!/usr/bin/python3
"""The packaged virtinst's storage API, called as virt-manager's dialogs call it.

    virtinst_ops.py info
        which virtinst this is and whether it knows the stormpool pool type
    virtinst_ops.py pool NAME SOURCE_DIR TARGET_PATH
        "Add a new storage pool" of type stormpool: StoragePool.install with
        build and start, as virtManager/createpool.py does
    virtinst_ops.py volume POOL NAME SIZE_MIB [BACKING_STORE]
        "Create new volume": StorageVolume.install of a qcow2 volume, with the
        backing store as the dialog gives it (a template's name), as
        virtManager/createvol.py does

Runs with the system's python3 and imports virtinst from
/usr/share/virt-manager, as the installed virt-install and virt-manager do;
talks to qemu:///system. Prints one JSON object; a failure is a traceback
and a non-zero status. Used by run-host-tests, in the test root.
"""

import json
import sys

sys.path.insert(0, "/usr/share/virt-manager")

import virtinst  # noqa: E402
from virtinst import StoragePool, StorageVolume, VirtinstConnection  # noqa: E402

MiB = 1024 * 1024


def connect():
    conn = VirtinstConnection("qemu:///system")
    conn.open(None, None)
    return conn


def info():
    return {"file": virtinst.__file__,
            "stormpool": getattr(StoragePool, "TYPE_STORMPOOL", None) == "stormpool"}


def pool(name, source, target):
    conn = connect()
    xmlobj = StoragePool(conn)
    xmlobj.type = StoragePool.TYPE_STORMPOOL
    xmlobj.name = name
    xmlobj.source_path = source
    xmlobj.target_path = target
    xmlobj.validate()
    poolobj = xmlobj.install(create=True, build=True)
    return {"name": poolobj.name(), "active": bool(poolobj.isActive()),
            "xml": poolobj.XMLDesc(0)}


def volume(pool_name, name, size_mib, backing=None):
    conn = connect()
    vol = StorageVolume(conn)
    vol.pool = conn.storagePoolLookupByName(pool_name)
    vol.name = name
    vol.capacity = int(size_mib) * MiB
    vol.allocation = 0
    vol.format = "qcow2"
    if backing:
        vol.backing_store = backing
    vol.validate()
    volobj = vol.install(meter=None)
    return {"path": volobj.path(), "backing_store": vol.backing_store,
            "backing_format": vol.backing_format}


def main():
    ops = {"info": info, "pool": pool, "volume": volume}
    if len(sys.argv) < 2 or sys.argv[1] not in ops:
        sys.exit(__doc__)
    print(json.dumps(ops[sys.argv[1]](*sys.argv[2:])))


if __name__ == "__main__":
    main()
