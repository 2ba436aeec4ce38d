"""The libvirt side: pools of the three configurations and their instances,
all through the private virsh (tools/virt-env exec puts it first on PATH)."""

import json
import os
import subprocess
import time

NS = "urn:stormpool:pool:1.0"


class VirshError(RuntimeError):
    pass


VIRT_ENV = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "virt-env")
RESTART_WAIT = 90      # seconds to wait for shared daemons that are restarting
CALL_TIMEOUT = 180     # a virsh call taking longer means a hung daemon
UNREACHABLE = ("Failed to connect socket", "failed to connect to the hypervisor")
CUT_OFF = ("End of file while reading data", "Cannot recv data", "Cannot write data")
# Commands that may be repeated when the daemon went away in the middle.
IDEMPOTENT = ("pool-destroy", "pool-undefine", "vol-delete", "vol-path", "pool-list")
hung = False           # once a call timed out, later calls fail at once


def run_virsh(args):
    """virsh @args. While the daemons cannot be reached (someone restarts the
    shared daemons) retry: a refused connection means nothing was done; a
    connection cut in the middle is retried only for idempotent commands. A
    call that hangs (a deadlocked daemon) is an error after CALL_TIMEOUT."""
    global hung
    if hung:
        raise VirshError("virsh %s: not tried, the libvirt daemon hangs" % " ".join(args))
    deadline = time.monotonic() + RESTART_WAIT
    while True:
        try:
            proc = subprocess.run(["virsh", "-q"] + list(args), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, timeout=CALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            hung = True
            raise VirshError("virsh %s: no answer in %d s: the libvirt daemon hangs "
                             "(tools/virt-env log virtstoraged)" % (" ".join(args), CALL_TIMEOUT))
        failed = proc.returncode != 0
        unreachable = failed and any(m in proc.stderr for m in UNREACHABLE)
        retry = unreachable or (failed and args[0] in IDEMPOTENT and cut_off(proc.stderr))
        if not retry or time.monotonic() > deadline:
            return proc
        if unreachable and time.monotonic() > deadline - RESTART_WAIT + 10:
            # Still down after 10 s: stopped, not restarting. Start them (a
            # no-op for daemons that run; virt-env serializes with others).
            subprocess.run([VIRT_ENV, "start"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        time.sleep(1)


def cut_off(stderr):
    return any(m in stderr for m in CUT_OFF)


def virsh(*args, check=True):
    proc = run_virsh(args)
    if check and proc.returncode != 0:
        raise VirshError("virsh %s: %s" % (" ".join(args), proc.stderr.strip()))
    return proc.stdout if proc.returncode == 0 else proc.stderr


def stormpool_xml(name, primary, secondary, policy=None, tier=None, cap=None):
    """A stormpool pool; @tier and @cap put its replicas in a RAM tier."""
    extra = " tier='%s' cap='%s'" % (tier, cap) if tier else ""
    replica = "  <stormpool:replica policy='%s'%s/>\n" % (policy, extra) if policy else ""
    return ("<pool type='stormpool' xmlns:stormpool='%s'>\n"
            "  <name>%s</name>\n"
            "  <source><dir path='%s'/></source>\n"
            "  <target><path>%s</path></target>\n%s"
            "</pool>\n" % (NS, name, primary, secondary, replica))


def replica_supported(name, primary, secondary, workdir):
    """Does the running module accept <stormpool:replica>? Defines and
    undefines a probe pool (nothing is built or started)."""
    xml = os.path.join(workdir, "probe.xml")
    with open(xml, "w") as f:
        f.write(stormpool_xml(name, primary, secondary, "none"))
    proc = run_virsh(["pool-define", xml])
    if proc.returncode == 0:
        virsh("pool-undefine", name, check=False)
        return True
    if "unsupported element" in proc.stderr:
        return False
    raise VirshError("probe pool-define: %s" % proc.stderr.strip())


class Pool:
    """A started pool; remove() deletes its instances and undefines it."""

    def __init__(self, name, cleanup):
        self.name = name
        self.instances = []         # (name, path, create seconds)
        self.learners = []          # copy-on-read learning instances
        self.removed = False
        cleanup.push("pool %s" % name, self.remove)

    @classmethod
    def dir_pool(cls, name, path, cleanup):
        pool = cls(name, cleanup)
        virsh("pool-define-as", name, "dir", "--target", path)
        virsh("pool-start", name)
        return pool

    @classmethod
    def stormpool(cls, name, primary, secondary, policy, workdir, cleanup, tier=None,
                  cap=None):
        pool = cls(name, cleanup)
        xml = os.path.join(workdir, name + ".xml")
        with open(xml, "w") as f:
            f.write(stormpool_xml(name, primary, secondary, policy, tier, cap))
        virsh("pool-define", xml)
        virsh("pool-build", name)
        virsh("pool-start", name)
        return pool

    def create_instance(self, name, template, size):
        """vol-create-as of an overlay of @template; returns its path and
        the seconds the call took."""
        args = ["vol-create-as", self.name, name, str(size), "--format", "qcow2",
                "--backing-vol", template, "--backing-vol-format", "qcow2"]
        for attempt in range(3):
            start = time.monotonic()
            proc = run_virsh(args)
            seconds = time.monotonic() - start
            if proc.returncode == 0:
                break
            if attempt == 2 or not cut_off(proc.stderr):
                raise VirshError("virsh %s: %s" % (" ".join(args), proc.stderr.strip()))
            # The daemon went away in the middle (someone restarted the shared
            # daemons): remove whatever was made and create it again.
            if run_virsh(["vol-path", "--pool", self.name, name]).returncode == 0:
                virsh("vol-delete", "--pool", self.name, name)
        path = virsh("vol-path", "--pool", self.name, name).strip()
        self.instances.append((name, path, seconds))
        return path, seconds

    def create_learner(self, name, template, size):
        """An instance made to be booted once with copy-on-read: not one
        of the storm's instances; returns its path and seconds."""
        path, seconds = self.create_instance(name, template, size)
        self.instances.pop()
        self.learners.append(name)
        return path, seconds

    def delete_learners(self):
        while self.learners:
            virsh("vol-delete", "--pool", self.name, self.learners.pop())

    def grow_to(self, n, template, size):
        while len(self.instances) < n:
            self.create_instance("pc%02d.qcow2" % (len(self.instances) + 1), template, size)
        return [path for _, path, _ in self.instances[:n]]

    def remove(self):
        if self.removed:
            return
        self.removed = True
        errors = []
        names = [name for name, _, _ in reversed(self.instances)] + self.learners
        for name in names:
            try:
                virsh("vol-delete", "--pool", self.name, name)
            except VirshError as exc:
                errors.append(str(exc))
        self.instances, self.learners = [], []
        for command in ("pool-destroy", "pool-undefine"):
            try:
                virsh(command, self.name, check=False)
            except VirshError as exc:
                errors.append(str(exc))
        if errors:
            raise VirshError("; ".join(errors))


def backing_file(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    info = json.loads(out)
    return info.get("full-backing-filename") or info.get("backing-filename")
