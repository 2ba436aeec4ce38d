"""Bad input: every case is a clear libvirt error, nothing is created or
changed, the template is untouched and the daemons keep running.

The XML cases live in test-xml/: pool/{valid,invalid} and vol/{valid,invalid};
an invalid case NAME.xml comes with NAME.err, the text the error must hold.
"""

import os
import re
import subprocess
import tempfile

from taplib import (PREFIX, Suite, daemon_alive, listdir, make_tmpdir, qemu_img_info,
                    run, sha256, virsh, virsh_fails, vol_names, TOP)

XMLDIR = os.path.join(TOP, "test-xml")
POOL = "sp-bad-input"

suite = Suite("bad-input")
root = make_tmpdir("bad-input-")
suite.cleanup_dir(root)
primary = os.path.join(root, "hdd")
secondary = os.path.join(root, "ssd")
template = os.path.join(primary, "base.qcow2")
outside_dir = os.path.join(root, "elsewhere")
outside = os.path.join(outside_dir, "other.qcow2")
state = {}


def substitute(path, extra=None):
    with open(path) as f:
        text = f.read()
    values = {"@PRIMARY@": primary, "@SECONDARY@": secondary,
              "@TEMPLATE@": template, "@OUTSIDE@": outside}
    values.update(extra or {})
    for key, value in values.items():
        text = text.replace(key, value)
    out = os.path.join(root, "case-" + os.path.basename(path))
    with open(out, "w") as f:
        f.write(text)
    return out


def cases(kind, validity):
    directory = os.path.join(XMLDIR, kind, validity)
    return sorted(f[:-4] for f in os.listdir(directory)
                  if f.endswith(".xml") and not f.endswith(".out.xml"))


def expected_error(kind, name):
    with open(os.path.join(XMLDIR, kind, "invalid", name + ".err")) as f:
        return f.read().strip()


def snapshot():
    return listdir(primary), listdir(secondary), sha256(template)


def assert_unchanged():
    assert snapshot() == state["snapshot"], (snapshot(), state["snapshot"])
    assert daemon_alive()


@suite.step("setup: a pool with template base.qcow2 and instance inst.qcow2")
def _():
    # A pool left by an interrupted earlier run must not fail this one.
    run(["virsh", "-q", "pool-destroy", POOL], check=False)
    run(["virsh", "-q", "pool-undefine", POOL], check=False)
    suite.cleanup_pool(POOL)
    os.makedirs(outside_dir)
    virsh("pool-define-as", POOL, "stormpool", "--source-path", primary,
          "--target", secondary)
    virsh("pool-build", POOL)
    virsh("pool-start", POOL)
    run(["qemu-img", "create", "-q", "-f", "qcow2", template, "64M"])
    run(["qemu-img", "create", "-q", "-f", "qcow2", outside, "64M"])
    virsh("pool-refresh", POOL)
    virsh("vol-create-as", POOL, "inst.qcow2", "64M", "--format", "qcow2",
          "--backing-vol", "base.qcow2", "--backing-vol-format", "qcow2")
    state["snapshot"] = snapshot()


for name in cases("vol", "invalid"):
    @suite.step("vol-create refuses test-xml/vol/invalid/%s.xml" % name)
    def _(name=name):
        path = substitute(os.path.join(XMLDIR, "vol", "invalid", name + ".xml"))
        virsh_fails("vol-create", POOL, path, expect=expected_error("vol", name))
        assert_unchanged()


for name in cases("vol", "valid"):
    @suite.step("vol-create accepts test-xml/vol/valid/%s.xml" % name)
    def _(name=name):
        path = substitute(os.path.join(XMLDIR, "vol", "valid", name + ".xml"))
        before = set(vol_names(POOL))
        virsh("vol-create", POOL, path)
        created = set(vol_names(POOL)) - before
        assert len(created) == 1, created
        vol = created.pop()
        path = virsh("vol-path", "--pool", POOL, vol).strip()
        if qemu_img_info(path)["format"] == "qcow2":
            run(["qemu-img", "check", "-q", path])
        virsh("vol-delete", "--pool", POOL, vol)
        assert_unchanged()


@suite.step("vol-create-as: bad names, backing volumes and sizes through virsh options")
def _():
    def refused(*args, expect):
        virsh_fails("vol-create-as", POOL, *args, expect=expect)
        assert_unchanged()

    refused("", "64M", expect="")
    refused("x" * 256, "64M", expect="the limit is 255")
    refused("a/b", "64M", "--format", "qcow2", "--backing-vol", "base.qcow2",
            expect="must not contain '/'")
    refused(".x", "64M", expect="must not start with '.'")
    refused("base.qcow2", "64M", "--backing-vol", "base.qcow2",
            expect="storage volume 'base.qcow2' exists already")
    refused("inst.qcow2", "64M", expect="storage volume 'inst.qcow2' exists already")
    refused("pc.qcow2", "64M", "--backing-vol", "missing.qcow2",
            expect="failed to get vol 'missing.qcow2'")
    refused("pc.qcow2", "-5G", expect="")
    refused("pc.qcow2", "16E", "--format", "qcow2", expect="")
    refused("pc.qcow2", "64M", "--format", "qed", expect="unsupported volume format 'qed'")


@suite.step("vol-create-as --prealloc-metadata is refused with the reason, nothing is left")
def _():
    reason = ("stormpool volumes cannot have preallocated metadata: an instance is a thin "
              "qcow2 overlay of its template, and a template gets its data from vol-upload "
              "or vol-create-from")
    for args in (["pc.qcow2", "64M", "--format", "qcow2", "--backing-vol", "base.qcow2"],
                 ["tpl.qcow2", "64M", "--format", "qcow2"]):
        err = virsh_fails("vol-create-as", POOL, *args, "--prealloc-metadata",
                          expect="invalid argument: " + reason)
        assert "unsupported flags" not in err, err
        assert_unchanged()
    virsh_fails("vol-clone", "--pool", POOL, "inst.qcow2", "clone.qcow2",
                "--prealloc-metadata", expect=reason)
    assert_unchanged()


@suite.step("a backing volume of another pool is refused")
def _():
    other = "sp-bad-input-dir"
    suite.cleanup_pool(other)
    virsh("pool-define-as", other, "dir", "--target", outside_dir)
    virsh("pool-start", other)
    virsh_fails("vol-create-as", POOL, "pc.qcow2", "64M", "--format", "qcow2",
                "--backing-vol", outside, expect="is not a template of pool")
    virsh("pool-destroy", other)
    virsh("pool-undefine", other)
    assert_unchanged()


@suite.step("a file created behind libvirt's back blocks the name")
def _():
    sneaky = os.path.join(primary, "sneaky.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", sneaky, "1M"])
    virsh_fails("vol-create-as", POOL, "sneaky.qcow2", "64M", "--format", "qcow2",
                "--backing-vol", "base.qcow2",
                expect="a file named 'sneaky.qcow2' already exists in the primary tier")
    os.unlink(sneaky)
    assert_unchanged()


for name in cases("pool", "invalid"):
    @suite.step("pool-define refuses test-xml/pool/invalid/%s.xml" % name)
    def _(name=name):
        path = substitute(os.path.join(XMLDIR, "pool", "invalid", name + ".xml"))
        virsh_fails("pool-define", path, expect=expected_error("pool", name))
        assert "sp-bad" not in virsh("pool-list", "--all", "--name").split()
        assert daemon_alive()


for name in cases("pool", "valid"):
    @suite.step("pool-define of test-xml/pool/valid/%s.xml round-trips" % name)
    def _(name=name):
        extra = {"@PRIMARY@": os.path.join(root, "rt-" + name, "hdd"),
                 "@SECONDARY@": os.path.join(root, "rt-" + name, "ssd")}
        path = substitute(os.path.join(XMLDIR, "pool", "valid", name + ".xml"), extra)
        expected = substitute(os.path.join(XMLDIR, "pool", "valid", name + ".out.xml"), extra)
        with open(path) as f:
            pool = re.search(r"<name>([^<]+)</name>", f.read()).group(1)
        virsh("pool-define", path)
        suite.cleanup_pool(pool)
        xml = virsh("pool-dumpxml", "--inactive", pool)
        with open(expected) as f:
            assert xml.strip() == f.read().strip(), xml
        virsh("pool-define", path, "--validate")
        virsh("pool-undefine", pool)


@suite.step("pool-define --validate accepts our namespace; the full schema validates dumpxml")
def _():
    xml = virsh("pool-dumpxml", POOL)
    assert "<stormpool:tiers>" in xml
    path = os.path.join(root, "live.xml")
    with open(path, "w") as f:
        f.write(xml)
    rng = os.path.join(PREFIX, "share", "libvirt", "schemas",
                       "stormpool-pool.rng")
    run(["xmllint", "--noout", "--relaxng", rng, path])
    run(["virt-xml-validate", path, "storagepool"])


@suite.step("pool-define-as with overlapping tiers is refused")
def _():
    virsh_fails("pool-define-as", "sp-bad", "stormpool", "--source-path", primary,
                "--target", os.path.join(primary, "inst"),
                expect="must be two separate directories")
    virsh_fails("pool-define-as", "sp-bad", "stormpool", "--source-path", primary,
                "--target", primary, expect="must be two separate directories")


@suite.step("a second pool sharing a tier directory is refused")
def _():
    virsh_fails("pool-define-as", "sp-bad", "stormpool", "--source-path", primary,
                "--target", os.path.join(root, "other-ssd"),
                expect="Storage source conflict with pool: '%s'" % POOL)
    virsh_fails("pool-define-as", "sp-bad", "stormpool", "--source-path",
                os.path.join(root, "other-hdd"), "--target", secondary,
                expect="Storage source conflict with pool: '%s'" % POOL)


@suite.step("pool-start with a missing tier, a file as tier or a symlinked overlap fails clearly")
def _():
    base = os.path.join(root, "startfail")
    suite.cleanup_pool("sp-bad-start")
    virsh("pool-define-as", "sp-bad-start", "stormpool", "--source-path",
          os.path.join(base, "hdd"), "--target", os.path.join(base, "ssd"))
    # a pool error that says what is missing, not "Storage volume not found"
    err = virsh_fails("pool-start", "sp-bad-start",
                      expect="Requested operation is not valid: primary tier directory "
                             "'%s/hdd' does not exist; virsh pool-build creates it" % base)
    assert "Storage volume not found" not in err, err
    os.makedirs(os.path.join(base, "hdd"))
    err = virsh_fails("pool-start", "sp-bad-start",
                      expect="secondary tier directory '%s/ssd' does not exist" % base)
    assert "Storage volume not found" not in err, err
    os.rmdir(os.path.join(base, "hdd"))
    os.makedirs(os.path.join(base, "hdd"))
    with open(os.path.join(base, "ssd"), "w") as f:
        f.write("a file")
    virsh_fails("pool-start", "sp-bad-start", expect="secondary tier '%s/ssd' is not a directory" % base)
    os.unlink(os.path.join(base, "ssd"))
    os.symlink(os.path.join(base, "hdd"), os.path.join(base, "ssd"))
    virsh_fails("pool-start", "sp-bad-start", expect="which overlap")
    virsh("pool-undefine", "sp-bad-start")
    assert daemon_alive()


@suite.step("pool-start with a read-only secondary tier fails clearly")
def _():
    if os.geteuid() != 0:
        raise AssertionError("the integration suites run as root")
    base = os.path.join(root, "readonly")
    ro = os.path.join(base, "ssd")
    os.makedirs(os.path.join(base, "hdd"))
    os.makedirs(ro)
    run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "stormpool-test", ro])
    suite.cleanup(subprocess.run, ["umount", ro])
    suite.cleanup_pool("sp-bad-ro")
    virsh("pool-define-as", "sp-bad-ro", "stormpool", "--source-path",
          os.path.join(base, "hdd"), "--target", ro)
    virsh_fails("pool-start", "sp-bad-ro", expect="is not writable")
    virsh("pool-undefine", "sp-bad-ro")


@suite.step("operations on instances and templates that must be refused")
def _():
    virsh_fails("vol-upload", "--pool", POOL, "inst.qcow2", template,
                expect="cannot upload into instance 'inst.qcow2'")
    virsh_fails("vol-resize", "--pool", POOL, "inst.qcow2", "1M", "--shrink",
                expect="can only grow")
    virsh_fails("vol-delete", "--pool", POOL, "base.qcow2",
                expect="cannot delete template 'base.qcow2': 1 instance(s) depend on it: inst.qcow2")
    assert_unchanged()


@suite.step("an instance with an external snapshot layer on it is neither deleted nor "
            "wiped; both files stay as they were")
def _():
    inst = os.path.join(secondary, "inst.qcow2")
    layer = os.path.join(secondary, "inst.s1")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", inst, "-F", "qcow2", layer])
    suite.cleanup(lambda: os.path.exists(layer) and os.unlink(layer))
    before = sha256(layer)
    want = "1 layer(s) in '%s' back onto it: inst.s1" % secondary
    virsh_fails("vol-delete", "--pool", POOL, "inst.qcow2",
                expect="cannot delete instance 'inst.qcow2': " + want)
    virsh_fails("vol-wipe", "--pool", POOL, "inst.qcow2",
                expect="cannot wipe instance 'inst.qcow2': " + want)
    assert sha256(layer) == before
    os.unlink(layer)
    assert_unchanged()


def ofd_locked(path):
    """Whether some process holds an OFD lock (QEMU's image locks) on path."""
    st = os.stat(path)
    ident = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as f:
        return any(line.split()[1] == "OFDLCK" and line.split()[5] == ident for line in f)


@suite.step("an instance held open by a QEMU started by hand is protected")
def _():
    inst = os.path.join(secondary, "inst.qcow2")
    errors = tempfile.TemporaryFile(mode="w+")
    holder = subprocess.Popen(["qemu-io", "-f", "qcow2", "-c", "sleep 60000", inst],
                              stdout=subprocess.DEVNULL, stderr=errors)
    try:
        import time
        deadline = time.monotonic() + 30
        # Wait for qemu-io's lock without probing it: a probe such as
        # qemu-img info takes a lock of its own, and qemu-io, if it opens
        # the image at that moment, fails to get its write lock and exits.
        while not ofd_locked(inst):
            if holder.poll() is not None:
                errors.seek(0)
                raise AssertionError("qemu-io exited early: %s" % errors.read().strip())
            assert time.monotonic() < deadline, "qemu-io never took the image lock"
            time.sleep(0.025)
        assert run(["qemu-img", "info", inst], check=False)[0] != 0, \
            "qemu-img info opened an image qemu-io holds"
        for args, action in ((["vol-delete"], "delete"), (["vol-wipe"], "wipe"),
                             (["vol-resize", "--pool", POOL, "inst.qcow2", "1G"], "resize")):
            if args[0] != "vol-resize":
                args = args + ["--pool", POOL, "inst.qcow2"]
            virsh_fails(*args, expect="cannot %s 'inst.qcow2': it is in use by a running "
                                      "guest or another QEMU process" % action)
        virsh_fails("vol-clone", "--pool", POOL, "inst.qcow2", "copy.qcow2",
                    expect="cannot copy 'inst.qcow2': a running guest or another QEMU "
                           "process is writing to it")
    finally:
        holder.kill()
        holder.wait()
    assert_unchanged()


@suite.step("a template whose backing file lies outside the primary tier is never used")
def _():
    # e.g. a raw template whose guest wrote a qcow2 header pointing at a
    # host file: making a replica would read it as root
    evil = os.path.join(primary, "evil.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", outside,
         "-F", "qcow2", evil, "64M"])
    virsh("pool-refresh", POOL)
    assert "evil.qcow2" not in vol_names(POOL), vol_names(POOL)
    virsh_fails("vol-create-as", POOL, "x.qcow2", "64M", "--format", "qcow2",
                "--backing-vol", "evil.qcow2", expect="")
    os.unlink(evil)
    virsh("pool-refresh", POOL)
    assert_unchanged()


@suite.step("an unreadable or foreign file in a tier is skipped, the pool stays up")
def _():
    vmdk = os.path.join(primary, "disk.vmdk")
    run(["qemu-img", "create", "-q", "-f", "vmdk", vmdk, "1M"])
    os.symlink("/etc/passwd", os.path.join(primary, "link.img"))
    os.mkdir(os.path.join(secondary, "subdir"))
    with open(os.path.join(secondary, "truncated.qcow2"), "wb") as f:
        f.write(b"QFI\xfb\0\0\0\3")
    virsh("pool-refresh", POOL)
    assert vol_names(POOL) == ["base.qcow2", "inst.qcow2"], vol_names(POOL)
    assert "running" in virsh("pool-info", POOL)
    log = os.path.join(PREFIX, "var", "log", "libvirt", "virtstoraged.log")
    with open(log, errors="replace") as f:
        text = f.read()
    assert "skipping '%s'" % vmdk in text
    for junk in ("disk.vmdk", "link.img"):
        os.unlink(os.path.join(primary, junk))
    os.rmdir(os.path.join(secondary, "subdir"))
    os.unlink(os.path.join(secondary, "truncated.qcow2"))
    assert_unchanged()


@suite.step("teardown: volumes, pool and directories go away cleanly")
def _():
    virsh("vol-delete", "--pool", POOL, "inst.qcow2")
    virsh("vol-delete", "--pool", POOL, "base.qcow2")
    virsh("pool-destroy", POOL)
    virsh("pool-delete", POOL)
    virsh("pool-undefine", POOL)
    assert daemon_alive()


suite.finish()
