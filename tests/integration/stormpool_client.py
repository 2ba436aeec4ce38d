"""Talk to stormpool pools through python3-libvirt: the helper shared by
the integration tests (conftest.py) and the benchmarks.

Everything here goes to the libvirt that the environment points at
(tools/virt-env exec sets LIBVIRT_DEFAULT_URI, LD_LIBRARY_PATH and
STORMPOOL_PREFIX); nothing here depends on pytest. A refusal is told by
its libvirt error code (libvirt.VIR_ERR_*, LibvirtError.code), never by
the text a command line tool printed.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

import libvirt

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS = "urn:stormpool:pool:1.0"
REPLICAS = ".stormpool-replicas"
TMP_PREFIX = ".stormpool-tmp-"
# Commands after which libvirt refreshes a pool, whose refresh hands its
# slow work (replica copies and rebuilds, hot-set learning, collection,
# stamps) to the pool's background worker.
REFRESHING = ("pool-refresh", "pool-start")
POOL_WORK_TIMEOUT = 300


# ---- the daemons' files --------------------------------------------------

def prefix():
    """The private libvirt's prefix (_build/prefix-VERSION resolved), as
    tools/virt-env exec exports it."""
    try:
        return os.environ["STORMPOOL_PREFIX"]
    except KeyError:
        raise RuntimeError("STORMPOOL_PREFIX is not set: run under tools/virt-env exec")


def storaged_log():
    return os.path.join(prefix(), "var", "log", "libvirt", "virtstoraged.log")


def log_size():
    try:
        return os.path.getsize(storaged_log())
    except OSError:
        return 0


# ---- connections and lookups ------------------------------------------------

def connect(uri=None):
    """A read-write connection: @uri, else libvirt's default
    (LIBVIRT_DEFAULT_URI; storage calls on qemu:///system go on to
    virtstoraged)."""
    return libvirt.open(uri)


@contextlib.contextmanager
def connection(uri=None):
    conn = connect(uri)
    try:
        yield conn
    finally:
        conn.close()


def lookup_pool(conn, name):
    return conn.storagePoolLookupByName(name)


def lookup_volume(conn, pool, name):
    """The volume @name of the pool named @pool."""
    return lookup_pool(conn, pool).storageVolLookupByName(name)


def pool_target(name, conn=None):
    """The pool's target path (its secondary tier), or None if there is
    no such pool."""
    try:
        if conn is None:
            with connection() as c:
                xml = lookup_pool(c, name).XMLDesc(0)
        else:
            xml = lookup_pool(conn, name).XMLDesc(0)
    except libvirt.libvirtError:
        return None
    path = ET.fromstring(xml).find("target/path")
    return path.text if path is not None else None


def vol_names(pool, conn=None):
    """Volume names of @pool, sorted (virsh 9.0's vol-list has no --name)."""
    if conn is None:
        with connection() as c:
            return sorted(lookup_pool(c, pool).listVolumes())
    return sorted(lookup_pool(conn, pool).listVolumes())


# ---- a pool's background work ----------------------------------------------

def wait_pool_work(pool, offset, conn=None):
    """Wait until the background work that a refresh of @pool queued after
    log offset @offset (of virtstoraged's log) is done: the worker's debug
    lines, in order. Where the daemon's log no longer carries them (a
    benchmark lowered its level), a fixed pause instead."""
    target = pool_target(pool, conn)
    if target is None:
        return
    log = storaged_log()
    queued = "pool '%s': refresh queued its background work" % target
    done = "pool '%s': background work done" % target
    start = time.monotonic()
    deadline = start + POOL_WORK_TIMEOUT
    while time.monotonic() < deadline:
        with open(log, "rb") as f:
            f.seek(offset if log_size() >= offset else 0)
            text = f.read().decode("utf-8", "replace")
        at = text.find(queued)
        if at < 0 and time.monotonic() > start + 5:
            print("# no background work of pool %s in the log: waited 5 s" % pool)
            return
        if at >= 0 and text.find(done, at) >= 0:
            return
        time.sleep(0.02)
    raise AssertionError("the background work of pool %s is not done after %d s"
                         % (pool, POOL_WORK_TIMEOUT))


def start_pool(pool_obj, wait=True):
    """pool-start through the API; waits for the refresh's background work."""
    offset = log_size()
    pool_obj.create(0)
    if wait:
        wait_pool_work(pool_obj.name(), offset, pool_obj.connect())


def refresh_pool(pool_obj, wait=True):
    offset = log_size()
    pool_obj.refresh(0)
    if wait:
        wait_pool_work(pool_obj.name(), offset, pool_obj.connect())


# ---- the command line tools -------------------------------------------------

class CommandFailed(AssertionError):
    pass


def run(argv, check=True, input=None):
    """Run a command; return (returncode, stdout, stderr) as text."""
    proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if check and proc.returncode != 0:
        raise CommandFailed("%s exited with %d\nstdout: %s\nstderr: %s" %
                            (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, proc.stdout, proc.stderr


def virsh(*args, check=True, wait=True):
    """The private virsh (tools/virt-env exec puts it first on PATH); its
    output. After a command that refreshes a pool, wait for the pool's
    background work (@wait), as callers expect its results at once."""
    offset = log_size()
    rc, out, _ = run(["virsh", "-q"] + list(args), check=check)
    words = [a for a in args if not a.startswith("-")]
    if wait and rc == 0 and len(words) >= 2 and words[0] in REFRESHING:
        wait_pool_work(words[1], offset)
    return out


def daemon_alive():
    """virsh version answers."""
    return run(["virsh", "-q", "version"], check=False)[0] == 0


# ---- images and files -----------------------------------------------------

def qemu_io(path, *commands, fmt="qcow2", cor=False):
    argv = ["qemu-io", "-f", fmt] + (["-C"] if cor else [])
    for c in commands:
        argv += ["-c", c]
    return run(argv + [path])[1]


def qemu_img_info(path):
    return json.loads(run(["qemu-img", "info", "--output=json", "-U", path])[1])


def backing_of(overlay):
    return qemu_img_info(overlay)["backing-filename"]


def make_template(path, size, writes=(), prealloc=False, backing=None):
    """A real qcow2 image at @path; @writes are (pattern, offset, length)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if prealloc:
        argv += ["-o", "preallocation=metadata"]
    if backing:
        argv += ["-b", backing, "-F", "qcow2"]
    run(argv + [path] + ([str(size)] if size else []))
    if writes:
        qemu_io(path, *["write -q -P 0x%02x %d %d" % w for w in writes])
    return path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def assert_pattern(path, pattern, offset, length):
    """The qcow2 image at @path reads @pattern at @offset+@length, through
    its whole chain, without taking its lock."""
    rc, out, err = run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c",
                        "read -P 0x%02x %d %d" % (pattern, offset, length), path],
                       check=False)
    assert rc == 0 and "Pattern verification failed" not in out + err, \
        "pattern 0x%02x not at %d+%d in %s: %s %s" % (pattern, offset, length, path, out, err)


def wait_for(predicate, timeout, what, interval=0.05):
    """Poll @predicate until it returns something true, and return that;
    fail after @timeout seconds, naming @what was waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


STAMPS_FILE = ".stormpool-template-stamps"
# The primary tier's records of the hosts sharing it (core/fs/host_records.h).
HOSTS_DIR = ".stormpool-hosts"


def listdir(path):
    """The directory's entries, without the pool's bookkeeping: its stamps
    file and the hosts' records."""
    if not os.path.isdir(path):
        return []
    return sorted(f for f in os.listdir(path) if f not in (STAMPS_FILE, HOSTS_DIR))


def tmp_files(d):
    return [f for f in listdir(d) if f.startswith(TMP_PREFIX)]


def template_data_paths(pool, template_path, conn=None):
    """The files an instance of the template @template_path in the stormpool
    pool named @pool may back onto: the template itself and its replicas in
    the secondary tier, as the pool's live XML lists them
    (<stormpool:replicas><stormpool:replica template= path=>)."""
    if conn is None:
        with connection() as c:
            xml = lookup_pool(c, pool).XMLDesc(0)
    else:
        xml = lookup_pool(conn, pool).XMLDesc(0)
    name = os.path.basename(template_path)
    paths = {template_path}
    for replica in ET.fromstring(xml).iter("{%s}replica" % NS):
        if replica.get("template") == name and replica.get("path"):
            paths.add(replica.get("path"))
    return paths


# ---- XML ------------------------------------------------------------------------

def pool_xml(name, primary, secondary, replica=None, extra=""):
    """A stormpool pool definition (pool-define-as cannot set our
    namespace); @replica is the attributes of <stormpool:replica>, or None
    for the default policy."""
    setting = "<stormpool:replica %s/>" % replica if replica else ""
    return """<pool type='stormpool' xmlns:stormpool='%s'>
  <name>%s</name>
  <source><dir path=%s/></source>
  <target><path>%s</path></target>
  %s%s
</pool>""" % (NS, escape(name), quoteattr(primary), escape(secondary), setting, extra)


def volume_xml(name, capacity, fmt="qcow2", backing=None, backing_format="qcow2"):
    """A volume definition, as virsh vol-create-as writes it; @backing is
    the backing file's path."""
    store = ""
    if backing:
        store = """
  <backingStore>
    <path>%s</path>
    <format type=%s/>
  </backingStore>""" % (escape(backing), quoteattr(backing_format))
    return """<volume>
  <name>%s</name>
  <capacity>%d</capacity>
  <target><format type=%s/></target>%s
</volume>""" % (escape(name), capacity, quoteattr(fmt), store)


def define_pool(conn, name, primary, secondary, replica=None, extra=""):
    return conn.storagePoolDefineXML(pool_xml(name, primary, secondary, replica, extra), 0)


def create_volume(conn, pool, name, capacity, fmt="qcow2", backing_vol=None,
                  backing_format="qcow2"):
    """Create a volume in the pool named @pool, an instance of the volume
    @backing_vol of that pool if given (virsh vol-create-as --backing-vol)."""
    pool_obj = lookup_pool(conn, pool)
    backing = None
    if backing_vol:
        backing = pool_obj.storageVolLookupByName(backing_vol).path()
    return pool_obj.createXML(volume_xml(name, capacity, fmt, backing, backing_format), 0)


# ---- guests ----------------------------------------------------------------------

def firmware_guest_xml(name, pool, volume, virt_type="qemu", disk_extra="", acpi=False):
    """A firmware-only guest on the stormpool volume @volume of @pool:
    SeaBIOS finds no bootable disk and waits, but QEMU opened the disk's
    whole chain at start, and block jobs and snapshots run on it.
    @disk_extra goes into the <disk> (<transient/>, say); @acpi gives the
    machine ACPI, which hotplug needs."""
    return """<domain type='%s'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>%s
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source pool='%s' volume='%s'/>
      <target dev='vda' bus='virtio'/>%s
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
""" % (virt_type, name, "\n  <features><acpi/></features>" if acpi else "", pool, volume,
       "\n      " + disk_extra if disk_extra else "")


def virt_manager_tree():
    """The patched virt-manager tree of the virt-manager that goes with
    LIBVIRT (tools/build-virt-manager --tree), where its programs run
    from as from a git checkout; an error if 'make virt-manager' has not
    made it."""
    tree = subprocess.check_output(
        [os.path.join(TOP, "tools", "build-virt-manager"), "--tree"], text=True).strip()
    if not os.path.exists(os.path.join(tree, "virt-clone")):
        raise RuntimeError("no patched virt-clone in %s: run make virt-manager" % tree)
    return tree


def virt_clone(*args, check=True, timeout=600):
    """The patched tree's virt-clone against the private daemons
    (qemu:///system), with @args; returns (returncode, output)."""
    argv = ["/usr/bin/python3", os.path.join(virt_manager_tree(), "virt-clone"),
            "--connect", "qemu:///system"] + list(args)
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise CommandFailed("%s exited with %d:\n%s" % (" ".join(argv), proc.returncode,
                                                        proc.stdout))
    return proc.returncode, proc.stdout


def remove_domain(name):
    """Destroy and undefine the domain @name with its snapshots' metadata,
    if there is one (the files of its snapshots are the test's to remove)."""
    run(["virsh", "-q", "destroy", name], check=False)
    run(["virsh", "-q", "undefine", "--snapshots-metadata", name], check=False)


# ---- the daemon's log ---------------------------------------------------------

MODULE_CATEGORY = "storage.storage_backend_stormpool"


def module_log_level():
    """The lowest priority (1 debug, 2 info, 3 warning, 4 error) of the
    module's messages that virtstoraged writes to its log file right now
    (5: none, or unknown). The daemons are shared, and a benchmark may lower
    the logging at run time (bench/bench-create sets '3:*' through
    virt-admin)."""
    import fnmatch
    virt_admin = os.path.join(prefix(), "bin", "virt-admin")
    log = storaged_log()

    def admin(cmd):
        rc, out, _ = run([virt_admin, "-c", "virtstoraged:///system", cmd], check=False)
        return out.split(":", 1)[1].split() if rc == 0 and ":" in out else None
    filters, outputs = admin("daemon-log-filters"), admin("daemon-log-outputs")
    if filters is None or outputs is None:
        return 5
    level = 3                               # libvirt's default priority
    for f in filters:
        prio, _, pattern = f.lstrip("+").partition(":")
        if "*" not in pattern:
            pattern = "*%s*" % pattern
        if fnmatch.fnmatchcase(MODULE_CATEGORY, pattern):
            level = int(prio)
            break
    out_level = [int(o.split(":", 1)[0]) for o in outputs if o.endswith(log)]
    return max(level, min(out_level)) if out_level else 5


class LogMark:
    """A place in virtstoraged's log, and the module's log level then."""

    def __init__(self):
        self.offset = log_size()
        self.level = module_log_level()

    def since(self):
        """The log's text after the mark."""
        with open(storaged_log(), "rb") as f:
            if log_size() >= self.offset:
                f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def checkable(self, level):
        """True if messages of @level reached the log since the mark; else
        say why a log assertion is not made."""
        now = module_log_level()
        if max(self.level, now) <= level:
            return True
        print("# log not checked: virtstoraged logs the module from level %d now "
              "(another user lowered it), this message is level %d" % (max(self.level, now), level))
        return False

    def assert_logged(self, text, level=2, count=None, timeout=30):
        """@text in the log since the mark (@count times): messages of a
        pool's background work may come a little after the command that
        queued it."""
        if not self.checkable(level):
            return
        deadline = time.monotonic() + timeout
        want = 1 if count is None else count
        while time.monotonic() < deadline and self.since().count(text) < want:
            time.sleep(0.05)
        log = self.since()
        if count is None:
            assert text in log, "%r not in the log:\n%s" % (text, log[-3000:])
        else:
            assert log.count(text) == count, "%r %d times in the log, not %d" % (
                text, log.count(text), count)

    def lines(self, *words):
        """The lines since the mark that hold every one of @words (the
        daemons are shared: other users' pools log too)."""
        return [line for line in self.since().splitlines() if all(w in line for w in words)]


# ---- errors ----------------------------------------------------------------------

def error_name(code):
    """libvirt.VIR_ERR_OPERATION_INVALID -> 'VIR_ERR_OPERATION_INVALID'."""
    for attr in dir(libvirt):
        if attr.startswith("VIR_ERR_") and getattr(libvirt, attr) == code \
           and attr not in ("VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR"):
            return attr
    return str(code)


class Refusal:
    """What a refused call raised: its libvirt error code and message."""

    def __init__(self):
        self.code = None
        self.message = None
        self.error = None


@contextlib.contextmanager
def refused(code, text=None):
    """Assert that the block raises a libvirt error with the error code
    @code (libvirt.VIR_ERR_*) and, if given, @text in its message. Yields
    a Refusal, filled in when the block is done.

        with refused(libvirt.VIR_ERR_OPERATION_INVALID, "cannot delete") as r:
            vol.delete(0)
    """
    result = Refusal()
    try:
        yield result
    except libvirt.libvirtError as e:
        result.error = e
        result.code = e.get_error_code()
        result.message = e.get_error_message() or str(e)
    else:
        raise AssertionError("the call succeeded, expected %s%s" %
                             (error_name(code), " (%r)" % text if text else ""))
    if result.code != code:
        raise AssertionError("expected %s, got %s: %s" % (
            error_name(code), error_name(result.code), result.message))
    if text is not None and text not in result.message:
        raise AssertionError("expected %r in the %s error, got: %s" % (
            text, error_name(code), result.message))
