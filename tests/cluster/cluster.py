"""The cluster tools/cluster-env makes, as Python sees it: its hosts
(hosta, hostb, hostc: their daemons, namespaces and local directories)
and a lab (one stormpool pool of the same name on every host, its
templates in the shared store). tests/cluster and bench/cluster use it,
run through `tools/cluster-env pytest` or `tools/cluster-env run`, which
give CLUSTER_STATE (the state directory) and the private libvirt's client
library.
"""

import json
import os
import subprocess
import time
from xml.sax.saxutils import escape, quoteattr

import libvirt

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_ENV = os.path.join(TOP, "tools", "cluster-env")
HOSTS = ("hosta", "hostb", "hostc")
TEMPLATES = "/srv/lab/templates"
SSD = "/srv/lab/ssd"
HOSTS_DIR = ".stormpool-hosts"
TMP_PREFIX = ".stormpool-tmp-"
NS = "urn:stormpool:pool:1.0"
MiB = 1024 * 1024
WORK_TIMEOUT = 120
NET = "10.213.0"
ADDRESS = {"hosta": NET + ".11", "hostb": NET + ".12", "hostc": NET + ".13"}
# virsh migrate --live --persistent --undefinesource --copy-storage-inc
MIGRATE_INC = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST |
               libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_NON_SHARED_INC)


def run(argv, check=True, input=None, timeout=300):
    """Run a command; (returncode, stdout, stderr) as text."""
    proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("%s exited with %d\nstdout: %s\nstderr: %s" %
                             (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, proc.stdout, proc.stderr


def message(error):
    """What a refused call says, as virsh prints it after 'error: '."""
    return error.get_error_message() or str(error)


# ---- hosts ---------------------------------------------------------------------------

class Host:
    """One simulated host: its daemons (through their sockets), its
    namespaces (sh) and, from outside, its local directories."""

    def __init__(self, state, name):
        self.name = name
        self.dir = os.path.join(state, "hosts", name)
        self.killed = False
        self.generation = 0     # counts the daemons' restarts

    def __repr__(self):
        return "Host(%s)" % self.name

    def socket(self, daemon="virtstoraged"):
        return os.path.join(self.dir, "var", "run", "libvirt", daemon + "-sock")

    def connect(self):
        return libvirt.open("storage:///system?socket=" + self.socket())

    def sh(self, *argv, check=True, input=None, timeout=300):
        """Run @argv inside the host's namespaces."""
        return run([CLUSTER_ENV, "host", self.name] + list(argv), check=check,
                   input=input, timeout=timeout)

    def ssd(self, *parts):
        """A path of the host's local tier, as seen from outside."""
        return os.path.join(self.dir, "ssd", *parts)

    def log(self):
        return os.path.join(self.dir, "var", "log", "libvirt", "virtstoraged.log")

    def log_size(self):
        try:
            return os.path.getsize(self.log())
        except OSError:
            return 0

    def log_since(self, offset):
        with open(self.log(), "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def kill(self):
        """kill -9 of every process of the host's libvirt (daemons, QEMUs)."""
        self.killed = True
        run([CLUSTER_ENV, "kill", self.name])

    def start(self):
        run([CLUSTER_ENV, "start", self.name])
        self.killed = False
        self.generation += 1


# ---- images, read inside a host (their backing files are in the store,
# which only the hosts mount) ----------------------------------------------

def image_info(host, image):
    """qemu-img info of @image, as a dict."""
    return json.loads(host.sh("qemu-img", "info", "-U", "--output=json", image)[1])


def own_data_bytes(host, image):
    """Bytes @image holds itself, not its backing file."""
    out = host.sh("qemu-img", "map", "-U", "--output=json", image)[1]
    return sum(e["length"] for e in json.loads(out) if e["depth"] == 0 and e["data"])


def assert_pattern(host, image, pattern, offset, length):
    """@image reads @pattern at @offset+@length through its whole chain."""
    rc, out, err = host.sh("qemu-io", "-r", "-U", "-f", "qcow2", "-c",
                           "read -P 0x%02x %d %d" % (pattern, offset, length), image,
                           check=False)
    assert rc == 0 and "Pattern verification failed" not in out + err, \
        "%s: pattern 0x%02x not at %d+%d in %s: %s %s" % (
            host.name, pattern, offset, length, image, out, err)


# ---- the lab: one pool of the same name on every host ---------------------------------

def pool_xml(name, primary, secondary, replica):
    setting = "<stormpool:replica %s/>" % replica if replica else ""
    return """<pool type='stormpool' xmlns:stormpool='%s'>
  <name>%s</name>
  <source><dir path=%s/></source>
  <target><path>%s</path></target>
  %s
</pool>""" % (NS, escape(name), quoteattr(primary), escape(secondary), setting)


def volume_xml(name, capacity, backing=None):
    store = ""
    if backing:
        store = "<backingStore><path>%s</path><format type='qcow2'/></backingStore>" % \
            escape(backing)
    return """<volume><name>%s</name><capacity>%d</capacity>
  <target><format type='qcow2'/></target>%s</volume>""" % (escape(name), capacity, store)


class Lab:
    """The pool @name, defined and started on every host."""

    def __init__(self, name, hosts):
        self.name = name
        self.hosts = hosts
        self.primary = os.path.join(TEMPLATES, name)
        self.secondary = os.path.join(SSD, name)
        self.conns = {}

    def conn(self, host):
        """A connection to @host's daemons, made again after a restart."""
        generation = self.hosts[host].generation
        c, made = self.conns.get(host, (None, None))
        if c is None or made != generation:
            c = self.hosts[host].connect()
            self.conns[host] = (c, generation)
        return c

    def pool(self, host):
        return self.conn(host).storagePoolLookupByName(self.name)

    def vol(self, host, name):
        return self.pool(host).storageVolLookupByName(name)

    def names(self, host):
        return sorted(self.pool(host).listVolumes())

    def wait_work(self, host, offset):
        """Wait for the background work that a refresh of the pool on
        @host queued after log offset @offset."""
        h = self.hosts[host]
        queued = "pool '%s': refresh queued its background work" % self.secondary
        done = "pool '%s': background work done" % self.secondary
        deadline = time.monotonic() + WORK_TIMEOUT
        while time.monotonic() < deadline:
            text = h.log_since(offset)
            at = text.find(queued)
            if at >= 0 and text.find(done, at) >= 0:
                return
            time.sleep(0.02)
        raise AssertionError("%s: the background work of %s is not done after %d s"
                             % (host, self.name, WORK_TIMEOUT))

    def refresh(self, host, wait=True):
        offset = self.hosts[host].log_size()
        self.pool(host).refresh(0)
        if wait:
            self.wait_work(host, offset)

    def start(self, host):
        offset = self.hosts[host].log_size()
        self.pool(host).create(0)
        self.wait_work(host, offset)

    def template(self, host, name, capacity=64 * MiB):
        """An empty qcow2 template made through @host's pool."""
        return self.pool(host).createXML(volume_xml(name, capacity), 0)

    def instance(self, host, name, template):
        """vol-create-as --backing-vol TEMPLATE on @host."""
        pool = self.pool(host)
        backing = pool.storageVolLookupByName(template).path()
        return pool.createXML(volume_xml(name, 64 * MiB, backing), 0)

    def record(self, host):
        """The text of @host's record in the store, read through hosta."""
        out = self.hosts["hosta"].sh("sh", "-c", 'cat "$1"/%s.*' % host, "sh",
                                     os.path.join(self.primary, HOSTS_DIR))[1]
        return out

    def instance_files(self, host):
        """The instances in @host's local tier (no temporary files)."""
        d = self.hosts[host].ssd(self.name)
        return sorted(f for f in os.listdir(d)
                      if not f.startswith(".") and os.path.isfile(os.path.join(d, f)))

    def remove(self):
        for host, h in self.hosts.items():
            if h.killed:
                h.start()
            try:
                pool = self.pool(host)
            except libvirt.libvirtError:
                continue            # no such pool
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        for c, _ in self.conns.values():
            try:
                c.close()
            except libvirt.libvirtError:
                pass
        self.conns = {}
        self.hosts["hosta"].sh("rm", "-rf", self.primary)
        for h in self.hosts.values():
            subprocess.run(["rm", "-rf", h.ssd(self.name)], check=True)


def define_lab(name, hosts, replica=None):
    """The pool @name defined, built and started on every host (@replica:
    the attributes of <stormpool:replica>, such as "policy='none'"),
    after whatever an interrupted run left under that name is removed."""
    lab = Lab(name, hosts)
    lab.remove()
    xml = pool_xml(lab.name, lab.primary, lab.secondary, replica)
    try:
        for host in HOSTS:
            pool = lab.conn(host).storagePoolDefineXML(xml, 0)
            pool.build(0)
            lab.start(host)
    except BaseException:
        lab.remove()
        raise
    return lab


def cluster_hosts():
    """{name: Host} of the cluster; makes it if it does not run."""
    state = os.environ.get("CLUSTER_STATE")
    if not state:
        raise RuntimeError("run under tools/cluster-env (pytest or run): CLUSTER_STATE is not set")
    run([CLUSTER_ENV, "up"])
    return {name: Host(state, name) for name in HOSTS}


# ---- guests and their migration ------------------------------------------------------

def guest_xml(name, pool, volume, memory_mib=64):
    """A guest with the volume as its one disk and nothing to boot:
    SeaBIOS finds no bootable disk and waits, QEMU runs on."""
    return """<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='%s' volume='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <memballoon model='none'/>
  </devices>
</domain>""" % (escape(name), memory_mib, escape(pool), escape(volume))


def qemu_conn(hosts, host):
    return libvirt.open("qemu:///system?socket=" + hosts[host].socket("virtqemud"))


def migrate(hosts, name, source, destination, uri=None, bandwidth=None, flags=MIGRATE_INC):
    """virsh migrate --live --persistent --undefinesource --copy-storage-inc
    --migrate-disks vda (or @flags), driven by a client that talks to both
    daemons (@bandwidth: --bandwidth, in MiB/s, which bounds the disks'
    mirror too)."""
    src, dst = qemu_conn(hosts, source), qemu_conn(hosts, destination)
    address = "tcp://" + ADDRESS[destination]
    params = {libvirt.VIR_MIGRATE_PARAM_URI: uri or address,
              libvirt.VIR_MIGRATE_PARAM_DISKS_URI: address,
              libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: ["vda"]}
    if bandwidth:
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = bandwidth
    try:
        src.lookupByName(name).migrate3(dst, params, flags)
    finally:
        src.close()
        dst.close()
