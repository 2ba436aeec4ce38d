"""Bad input: every case is a clear libvirt error, nothing is created or
changed, the template is untouched and the daemons keep running.

The XML cases live in test-xml/: pool/{valid,invalid} and vol/{valid,invalid};
an invalid case NAME.xml comes with NAME.err, the text the error must hold.
Each case is one test, against a pool of its own (the `bad` fixture: a
template base.qcow2 and its instance inst.qcow2, a qcow2 file outside the
pool); after a refusal, both tiers and the template are as they were and
the daemon answers. A refusal is checked by its libvirt error code and its
message, through python3-libvirt; the options of virsh vol-create-as are
given through virsh, whose own checks are part of what is tested. Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_bad_input.py -k prealloc
"""

import os
import re
import subprocess
import tempfile
import time

import libvirt
import pytest

import stormpool_client as sp
from stormpool_client import (LogMark, daemon_alive, listdir, make_template, qemu_img_info,
                              refused, run, sha256)

MiB = 1024 * 1024
XMLDIR = os.path.join(sp.TOP, "test-xml")

INVALID_ARG = libvirt.VIR_ERR_INVALID_ARG                       # SP_ERROR_INVALID_ARG
IN_USE = libvirt.VIR_ERR_OPERATION_INVALID                      # SP_ERROR_IN_USE
INVALID_STATE = libvirt.VIR_ERR_OPERATION_INVALID               # SP_ERROR_INVALID_STATE
NOT_FOUND = libvirt.VIR_ERR_NO_STORAGE_VOL                      # SP_ERROR_NOT_FOUND
EXISTS = libvirt.VIR_ERR_STORAGE_VOL_EXIST                      # SP_ERROR_EXISTS
UNSUPPORTED = libvirt.VIR_ERR_CONFIG_UNSUPPORTED                # SP_ERROR_UNSUPPORTED
XML_ERROR = libvirt.VIR_ERR_XML_ERROR                           # SP_ERROR_XML
FAILED = libvirt.VIR_ERR_OPERATION_FAILED                       # libvirt's own
SYSTEM_ERROR = libvirt.VIR_ERR_SYSTEM_ERROR                     # a failed system call

# The libvirt error code of each invalid case of test-xml/ (its message is
# in NAME.err): the module's SP_ERROR_* as translated by
# module/stormpool_translate.c, or libvirt's own parser's.
VOL_CODES = {
    "backing-format-mismatch": INVALID_ARG,
    "backing-instance": INVALID_ARG,
    "backing-missing": NOT_FOUND,
    "backing-outside": NOT_FOUND,
    "capacity-absurd": INVALID_ARG,
    "capacity-negative": XML_ERROR,
    "capacity-smaller": INVALID_ARG,
    "format-unknown": UNSUPPORTED,
    "format-vmdk": UNSUPPORTED,
    "instance-raw": UNSUPPORTED,
    "malformed": libvirt.VIR_ERR_XML_DETAIL,
    "name-dot": INVALID_ARG,
    "name-equals-template": EXISTS,
    "name-slash": INVALID_ARG,
    "name-too-long": INVALID_ARG,
    "template-no-capacity": XML_ERROR,
    "template-zero-capacity": INVALID_ARG,
}
POOL_CODES = {
    "libvirt-malformed": libvirt.VIR_ERR_XML_DETAIL,
    "libvirt-missing-source-dir": XML_ERROR,
    "libvirt-missing-target": XML_ERROR,
    "nested-dir": INVALID_ARG,
    "ns-bad-tier-name": XML_ERROR,
    "ns-foreign-child": XML_ERROR,
    "ns-replica-bad-policy": XML_ERROR,
    "ns-replica-bad-prepare": XML_ERROR,
    "ns-replica-cap-no-tier": XML_ERROR,
    "ns-replica-eager-none": XML_ERROR,
    "ns-replica-tier-bad-cap": XML_ERROR,
    "ns-replica-tier-in-primary": XML_ERROR,
    "ns-replica-tier-is-secondary": XML_ERROR,
    "ns-replica-tier-link": XML_ERROR,
    "ns-replica-tier-no-cap": XML_ERROR,
    "ns-replica-tier-relative": XML_ERROR,
    "ns-replica-twice": XML_ERROR,
    "ns-transient-bad-cap": XML_ERROR,
    "ns-transient-in-replica-tier": XML_ERROR,
    "ns-transient-in-secondary": XML_ERROR,
    "ns-transient-no-cap": XML_ERROR,
    "ns-transient-no-tier": XML_ERROR,
    "ns-transient-relative": XML_ERROR,
    "ns-transient-twice": XML_ERROR,
    "ns-unknown-element": XML_ERROR,
    "relative-source": INVALID_ARG,
    "same-dir": INVALID_ARG,
}


def cases(kind, validity):
    directory = os.path.join(XMLDIR, kind, validity)
    return sorted(f[:-4] for f in os.listdir(directory)
                  if f.endswith(".xml") and not f.endswith(".out.xml"))


def expected_error(kind, name):
    with open(os.path.join(XMLDIR, kind, "invalid", name + ".err")) as f:
        return f.read().strip()


def substitute(path, values):
    """The text of the test-xml case @path, its @PLACEHOLDERS@ replaced by
    @values."""
    with open(path) as f:
        text = f.read()
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def case_name(xml):
    """The <name> of a pool case (found in malformed XML too), or None."""
    m = re.search(r"<name>([^<]+)</name>", xml)
    return m.group(1) if m else None


class BadInput:
    """A pool with a template base.qcow2 and an instance inst.qcow2 of it,
    and other.qcow2, a qcow2 file outside the pool (in `outside_dir`)."""

    def __init__(self, pool, root, outside):
        self.pool = pool
        self.root = root
        self.primary = pool.primary
        self.secondary = pool.secondary
        self.template = pool.template_path("base.qcow2")
        self.outside = outside
        self.outside_dir = os.path.dirname(outside)
        self.before = None

    @property
    def name(self):
        return self.pool.name

    def substitute(self, path):
        """The text of the test-xml case @path, with this pool's paths."""
        return substitute(path, {"@PRIMARY@": self.primary, "@SECONDARY@": self.secondary,
                                 "@TEMPLATE@": self.template, "@OUTSIDE@": self.outside})

    def snapshot(self):
        return listdir(self.primary), listdir(self.secondary), sha256(self.template)

    def assert_unchanged(self):
        """Both tiers list the same files, the template has the same bytes,
        and the daemon answers."""
        now = self.snapshot()
        assert now == self.before, (now, self.before)
        assert daemon_alive()


@pytest.fixture
def bad(pool, workdir):
    """The pool of a bad-input test (see BadInput), defined, built and
    started; removed with its files at the end of the test."""
    p = pool()
    make_template(p.template_path("base.qcow2"), 64 * MiB)
    outside = make_template(os.path.join(workdir, "elsewhere", "other.qcow2"), 64 * MiB)
    p.refresh()
    p.create_volume("inst.qcow2", 64 * MiB, backing_vol="base.qcow2")
    b = BadInput(p, workdir, outside)
    b.before = b.snapshot()
    return b


def virsh_fails(*args, expect):
    """virsh fails, its error holding @expect; returns its stderr."""
    rc, out, err = run(["virsh", "-q"] + list(args), check=False)
    assert rc != 0, "virsh %s succeeded, expected an error with %r\n%s" % (
        " ".join(args), expect, out)
    assert expect in err, "virsh %s: expected %r in the error, got:\n%s" % (
        " ".join(args), expect, err)
    return err


# ---- the volume cases of test-xml/ -------------------------------------------------

def test_every_invalid_case_has_its_error_code():
    """Each invalid case of test-xml/ has its libvirt error code here."""
    assert sorted(VOL_CODES) == cases("vol", "invalid")
    assert sorted(POOL_CODES) == cases("pool", "invalid")


@pytest.mark.parametrize("name", cases("vol", "invalid"))
def test_vol_create_refuses_invalid_xml(bad, name):
    """vol-create of test-xml/vol/invalid/NAME.xml is refused with the
    error of NAME.err; nothing is created or changed."""
    xml = bad.substitute(os.path.join(XMLDIR, "vol", "invalid", name + ".xml"))
    with refused(VOL_CODES[name], expected_error("vol", name)):
        bad.pool.obj.createXML(xml, 0)
    bad.assert_unchanged()


@pytest.mark.parametrize("name", cases("vol", "valid"))
def test_vol_create_accepts_valid_xml(bad, name):
    """vol-create of test-xml/vol/valid/NAME.xml makes one volume (qemu-img
    check passes on a qcow2 one), and its vol-delete leaves the pool as it
    was."""
    xml = bad.substitute(os.path.join(XMLDIR, "vol", "valid", name + ".xml"))
    before = set(bad.pool.vol_names())
    vol = bad.pool.obj.createXML(xml, 0)
    created = set(bad.pool.vol_names()) - before
    assert created == {vol.name()}, created
    path = vol.path()
    if qemu_img_info(path)["format"] == "qcow2":
        run(["qemu-img", "check", "-q", path])
    vol.delete(0)
    bad.assert_unchanged()


# ---- vol-create-as: what virsh's options hand over ----------------------------------

# (name, capacity, further options, what the error holds): virsh builds the
# volume XML (or refuses the option itself, where the text is empty).
VIRSH_OPTION_CASES = [
    pytest.param("", "64M", [], "", id="empty-name"),
    pytest.param("x" * 256, "64M", [], "the limit is 255", id="name-too-long"),
    pytest.param("a/b", "64M", ["--format", "qcow2", "--backing-vol", "base.qcow2"],
                 "must not contain '/'", id="name-slash"),
    pytest.param(".x", "64M", [], "must not start with '.'", id="name-dot"),
    pytest.param("base.qcow2", "64M", ["--backing-vol", "base.qcow2"],
                 "storage volume 'base.qcow2' exists already", id="name-of-template"),
    pytest.param("inst.qcow2", "64M", [], "storage volume 'inst.qcow2' exists already",
                 id="name-of-instance"),
    pytest.param("pc.qcow2", "64M", ["--backing-vol", "missing.qcow2"],
                 "failed to get vol 'missing.qcow2'", id="backing-missing"),
    pytest.param("pc.qcow2", "-5G", [], "", id="size-negative"),
    pytest.param("pc.qcow2", "16E", ["--format", "qcow2"], "", id="size-16E"),
    pytest.param("pc.qcow2", "64M", ["--format", "qed"], "unsupported volume format 'qed'",
                 id="format-qed"),
]


@pytest.mark.parametrize("name,capacity,options,expect", VIRSH_OPTION_CASES)
def test_vol_create_as_refuses_bad_option(bad, name, capacity, options, expect):
    """virsh vol-create-as with a bad name, backing volume, size or format
    fails (the text, where virsh hands the error over, is checked); nothing
    is created or changed."""
    virsh_fails("vol-create-as", bad.name, name, capacity, *options, expect=expect)
    bad.assert_unchanged()


PREALLOC_REASON = ("stormpool volumes cannot have preallocated metadata: an instance is a "
                   "thin qcow2 overlay of its template, and a template gets its data from "
                   "vol-upload or vol-create-from (a desktop moves to another host with "
                   "migrate --copy-storage-inc, not --copy-storage-all)")


@pytest.mark.parametrize("what", ["instance", "template"])
def test_prealloc_metadata_is_refused_with_the_reason(bad, what):
    """vol-create-as --prealloc-metadata of an instance or a template is
    refused as an invalid argument with the reason, not as unsupported
    flags; nothing is left."""
    if what == "instance":
        xml = sp.volume_xml("pc.qcow2", 64 * MiB, backing=bad.template)
    else:
        xml = sp.volume_xml("tpl.qcow2", 64 * MiB)
    with refused(INVALID_ARG, PREALLOC_REASON) as r:
        bad.pool.obj.createXML(xml, libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA)
    assert "unsupported flags" not in r.message, r.message
    bad.assert_unchanged()


def test_prealloc_metadata_clone_is_refused_with_the_reason(bad):
    """vol-clone --prealloc-metadata of an instance is refused with the
    reason; nothing is left."""
    source = bad.pool.vol("inst.qcow2")
    xml = re.sub(r"<name>[^<]*</name>", "<name>clone.qcow2</name>", source.XMLDesc(0), count=1)
    with refused(INVALID_ARG, PREALLOC_REASON):
        bad.pool.obj.createXMLFrom(xml, source, libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA)
    bad.assert_unchanged()


def test_backing_volume_of_another_pool_is_refused(conn, bad, pool_names):
    """An instance of a volume of another pool (a dir pool holding
    other.qcow2) is refused."""
    other = pool_names(bad.name + "-dir")
    conn.storagePoolDefineXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>"
        % (other, bad.outside_dir), 0).create(0)
    backing = conn.storageVolLookupByPath(bad.outside).path()
    with refused(NOT_FOUND, "backing volume '%s' is not a template of pool '%s' (templates "
                 "are the volumes in '%s')" % (backing, bad.name, bad.primary)):
        bad.pool.obj.createXML(sp.volume_xml("pc.qcow2", 64 * MiB, backing=backing), 0)
    sp.lookup_pool(conn, other).destroy()
    sp.lookup_pool(conn, other).undefine()
    bad.assert_unchanged()


def test_file_made_behind_libvirts_back_blocks_the_name(bad):
    """A file created in the primary tier behind libvirt's back keeps its
    name from a new volume."""
    sneaky = make_template(os.path.join(bad.primary, "sneaky.qcow2"), MiB)
    with refused(EXISTS, "a file named 'sneaky.qcow2' already exists in the primary tier '%s'"
                 % bad.primary):
        bad.pool.create_volume("sneaky.qcow2", 64 * MiB, backing_vol="base.qcow2")
    os.unlink(sneaky)
    bad.assert_unchanged()


# ---- the pool cases of test-xml/ ---------------------------------------------------

@pytest.mark.parametrize("name", cases("pool", "invalid"))
def test_pool_define_refuses_invalid_xml(conn, bad, pool_names, name):
    """pool-define of test-xml/pool/invalid/NAME.xml (on the tiers of a
    running pool) is refused with the error of NAME.err; no pool is
    defined."""
    xml = bad.substitute(os.path.join(XMLDIR, "pool", "invalid", name + ".xml"))
    defined = pool_names(case_name(xml) or "sp-bad")
    with refused(POOL_CODES[name], expected_error("pool", name)):
        conn.storagePoolDefineXML(xml, 0)
    all_pools = [p.name() for p in conn.listAllStoragePools(0)]
    assert defined not in all_pools and "sp-bad" not in all_pools, all_pools
    assert daemon_alive()


@pytest.mark.parametrize("name", cases("pool", "valid"))
def test_pool_define_of_valid_xml_round_trips(conn, workdir, pool_names, name):
    """pool-define of test-xml/pool/valid/NAME.xml: pool-dumpxml --inactive
    prints NAME.out.xml, and the definition passes pool-define --validate."""
    extra = {"@PRIMARY@": os.path.join(workdir, "rt-" + name, "hdd"),
             "@SECONDARY@": os.path.join(workdir, "rt-" + name, "ssd")}
    xml = substitute(os.path.join(XMLDIR, "pool", "valid", name + ".xml"), extra)
    expected = substitute(os.path.join(XMLDIR, "pool", "valid", name + ".out.xml"), extra)
    pool_names(case_name(xml))
    p = conn.storagePoolDefineXML(xml, 0)
    got = p.XMLDesc(libvirt.VIR_STORAGE_XML_INACTIVE)
    assert got.strip() == expected.strip(), got
    conn.storagePoolDefineXML(xml, libvirt.VIR_STORAGE_POOL_DEFINE_VALIDATE)
    p.undefine()


def test_live_xml_validates_against_the_schemas(bad, workdir):
    """The running pool's XML holds <stormpool:tiers> and passes both our
    RELAX NG schema and libvirt's virt-xml-validate."""
    xml = bad.pool.xml()
    assert "<stormpool:tiers>" in xml
    path = os.path.join(workdir, "live.xml")
    with open(path, "w") as f:
        f.write(xml)
    rng = os.path.join(sp.prefix(), "share", "libvirt", "schemas", "stormpool-pool.rng")
    run(["xmllint", "--noout", "--relaxng", rng, path])
    run(["virt-xml-validate", path, "storagepool"])


@pytest.mark.parametrize("inside", [True, False], ids=["target-inside-source", "same-dir"])
def test_overlapping_tiers_are_refused(conn, bad, pool_names, inside):
    """A pool whose secondary tier is inside its primary tier, or is that
    very directory, is refused at define."""
    target = os.path.join(bad.primary, "inst") if inside else bad.primary
    name = pool_names(bad.name + "-x")
    with refused(INVALID_ARG, "the primary tier '%s' and the secondary tier '%s' must be "
                 "two separate directories, neither inside the other" % (bad.primary, target)):
        sp.define_pool(conn, name, bad.primary, target)


@pytest.mark.parametrize("shared", ["primary", "secondary"])
def test_second_pool_sharing_a_tier_is_refused(conn, bad, pool_names, workdir, shared):
    """A second pool on the primary or the secondary tier of a pool is
    refused, naming the pool."""
    name = pool_names(bad.name + "-x")
    if shared == "primary":
        primary, secondary = bad.primary, os.path.join(workdir, "other-ssd")
    else:
        primary, secondary = os.path.join(workdir, "other-hdd"), bad.secondary
    with refused(FAILED, "Storage source conflict with pool: '%s'" % bad.name):
        sp.define_pool(conn, name, primary, secondary)


@pytest.fixture
def unstarted(conn, workdir, pool_names):
    """A defined, unbuilt pool on WORKDIR/startfail/{hdd,ssd}: (pool, base)."""
    base = os.path.join(workdir, "startfail")
    name = pool_names()
    p = sp.define_pool(conn, name, os.path.join(base, "hdd"), os.path.join(base, "ssd"))
    return p, base


def test_start_with_missing_primary_tier_says_so(unstarted):
    """pool-start without the primary tier: a pool error that names the
    missing directory and pool-build, not 'Storage volume not found'."""
    p, base = unstarted
    with refused(INVALID_STATE, "Requested operation is not valid: primary tier directory "
                 "'%s/hdd' does not exist; virsh pool-build creates it" % base) as r:
        p.create(0)
    assert "Storage volume not found" not in r.message, r.message
    assert daemon_alive()


def test_start_with_missing_secondary_tier_says_so(unstarted):
    """pool-start without the secondary tier names that one."""
    p, base = unstarted
    os.makedirs(os.path.join(base, "hdd"))
    with refused(INVALID_STATE, "secondary tier directory '%s/ssd' does not exist; "
                 "virsh pool-build creates it" % base) as r:
        p.create(0)
    assert "Storage volume not found" not in r.message, r.message
    assert daemon_alive()


def test_start_with_a_file_as_tier_fails(unstarted):
    """pool-start with a file where the secondary tier should be."""
    p, base = unstarted
    os.makedirs(os.path.join(base, "hdd"))
    with open(os.path.join(base, "ssd"), "w") as f:
        f.write("a file")
    with refused(INVALID_ARG, "secondary tier '%s/ssd' is not a directory" % base):
        p.create(0)
    assert daemon_alive()


def test_start_with_tiers_overlapping_through_a_symlink_fails(unstarted):
    """pool-start where the secondary tier is a symlink to the primary."""
    p, base = unstarted
    os.makedirs(os.path.join(base, "hdd"))
    os.symlink(os.path.join(base, "hdd"), os.path.join(base, "ssd"))
    real = os.path.realpath(os.path.join(base, "hdd"))
    with refused(INVALID_ARG, "the primary tier '%s/hdd' and the secondary tier '%s/ssd' "
                 "resolve to '%s' and '%s', which overlap" % (base, base, real, real)):
        p.create(0)
    assert daemon_alive()


def test_start_with_read_only_secondary_tier_fails(conn, workdir, pool_names):
    """pool-start with the secondary tier on a read-only file system says
    it is not writable."""
    assert os.geteuid() == 0, "the integration suites run as root"
    base = os.path.join(workdir, "readonly")
    ro = os.path.join(base, "ssd")
    os.makedirs(os.path.join(base, "hdd"))
    os.makedirs(ro)
    run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "stormpool-test", ro])
    try:
        name = pool_names()
        p = sp.define_pool(conn, name, os.path.join(base, "hdd"), ro)
        with refused(SYSTEM_ERROR, "secondary tier directory '%s' is not writable: Read-only "
                     "file system" % ro):
            p.create(0)
        p.undefine()
    finally:
        run(["umount", ro], check=False)
    assert not os.path.ismount(ro)


# ---- changes to instances and templates that must be refused -------------------------

def test_upload_into_an_instance_is_refused(conn, bad):
    """vol-upload into an instance is refused (upload fills templates)."""
    stream = conn.newStream(0)
    try:
        with refused(INVALID_STATE, "cannot upload into instance 'inst.qcow2': upload "
                     "fills templates; an instance's data comes from its guest"):
            bad.pool.vol("inst.qcow2").upload(stream, 0, os.path.getsize(bad.template), 0)
    finally:
        try:
            stream.abort()
        except libvirt.libvirtError:
            pass
    bad.assert_unchanged()


def test_shrinking_an_instance_is_refused(bad):
    """vol-resize --shrink of an instance: stormpool volumes only grow."""
    with refused(libvirt.VIR_ERR_OPERATION_UNSUPPORTED, "can only grow"):
        bad.pool.vol("inst.qcow2").resize(MiB, libvirt.VIR_STORAGE_VOL_RESIZE_SHRINK)
    bad.assert_unchanged()


def test_deleting_a_template_with_an_instance_is_refused(bad):
    """vol-delete of a template names the instance that depends on it."""
    with refused(IN_USE, "cannot delete template 'base.qcow2': 1 instance(s) depend on it: "
                 "inst.qcow2"):
        bad.pool.vol("base.qcow2").delete(0)
    bad.assert_unchanged()


@pytest.fixture
def layer(bad):
    """An external snapshot layer inst.s1 (qemu-img) on inst.qcow2, removed
    at the end."""
    path = os.path.join(bad.secondary, "inst.s1")
    make_template(path, 0, backing=os.path.join(bad.secondary, "inst.qcow2"))
    yield path
    if os.path.exists(path):
        os.unlink(path)


@pytest.mark.parametrize("change", ["delete", "wipe"])
def test_instance_under_a_snapshot_layer_is_kept(bad, layer, change):
    """An instance with an external snapshot layer on it is neither deleted
    nor wiped; both files stay as they were."""
    before = sha256(layer), sha256(os.path.join(bad.secondary, "inst.qcow2"))
    want = "1 layer(s) in '%s' back onto it: inst.s1" % bad.secondary
    vol = bad.pool.vol("inst.qcow2")
    with refused(IN_USE, "cannot %s instance 'inst.qcow2': %s" % (change, want)):
        vol.delete(0) if change == "delete" else vol.wipe(0)
    assert (sha256(layer), sha256(os.path.join(bad.secondary, "inst.qcow2"))) == before
    os.unlink(layer)
    bad.assert_unchanged()


def ofd_locked(path):
    """Whether some process holds an OFD lock (QEMU's image locks) on path."""
    st = os.stat(path)
    ident = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as f:
        return any(line.split()[1] == "OFDLCK" and line.split()[5] == ident for line in f)


@pytest.fixture
def held(bad):
    """inst.qcow2 held open for writing by a qemu-io started by hand
    (killed at the end)."""
    inst = os.path.join(bad.secondary, "inst.qcow2")
    errors = tempfile.TemporaryFile(mode="w+")
    holder = subprocess.Popen(["qemu-io", "-f", "qcow2", "-c", "sleep 60000", inst],
                              stdout=subprocess.DEVNULL, stderr=errors)
    try:
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
        yield holder
    finally:
        holder.kill()
        holder.wait()
        errors.close()


@pytest.mark.parametrize("change", ["delete", "wipe", "resize"])
def test_instance_held_by_a_qemu_started_by_hand_is_kept(bad, held, change):
    """An instance a QEMU process holds open is neither deleted, wiped nor
    resized."""
    vol = bad.pool.vol("inst.qcow2")
    with refused(IN_USE, "cannot %s 'inst.qcow2': it is in use by a running guest or "
                 "another QEMU process" % change):
        if change == "delete":
            vol.delete(0)
        elif change == "wipe":
            vol.wipe(0)
        else:
            vol.resize(1024 * MiB, 0)
    held.kill()
    held.wait()
    bad.assert_unchanged()


def test_instance_held_by_a_qemu_started_by_hand_is_not_cloned(bad, held):
    """vol-clone of an instance a QEMU process writes to is refused."""
    source = bad.pool.vol("inst.qcow2")
    xml = re.sub(r"<name>[^<]*</name>", "<name>copy.qcow2</name>", source.XMLDesc(0), count=1)
    with refused(IN_USE, "cannot copy 'inst.qcow2': a running guest or another QEMU "
                 "process is writing to it"):
        bad.pool.obj.createXMLFrom(xml, source, 0)
    held.kill()
    held.wait()
    bad.assert_unchanged()


# ---- files the pool must not trust ----------------------------------------------------

def test_template_backing_onto_a_file_outside_is_never_used(bad):
    """A 'template' whose backing file lies outside the primary tier (a raw
    template whose guest wrote a qcow2 header pointing at a host file:
    making a replica would read it as root) is neither listed nor used."""
    evil = os.path.join(bad.primary, "evil.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", bad.outside,
         "-F", "qcow2", evil, "64M"])
    bad.pool.refresh()
    assert "evil.qcow2" not in bad.pool.vol_names(), bad.pool.vol_names()
    with refused(NOT_FOUND):                            # not a volume of the pool
        bad.pool.create_volume("x.qcow2", 64 * MiB, backing_vol="evil.qcow2")
    with refused(NOT_FOUND, "backing volume '%s' is not a template of pool '%s' (templates "
                 "are the volumes in '%s')" % (evil, bad.name, bad.primary)):  # by its path
        bad.pool.obj.createXML(sp.volume_xml("x.qcow2", 64 * MiB, backing=evil), 0)
    os.unlink(evil)
    bad.pool.refresh()
    bad.assert_unchanged()


def test_unreadable_or_foreign_files_are_skipped(bad):
    """A vmdk, a symlink to /etc/passwd, a directory and a truncated qcow2
    in the tiers are skipped at refresh (the vmdk logged), the pool stays
    up."""
    vmdk = os.path.join(bad.primary, "disk.vmdk")
    run(["qemu-img", "create", "-q", "-f", "vmdk", vmdk, "1M"])
    os.symlink("/etc/passwd", os.path.join(bad.primary, "link.img"))
    os.mkdir(os.path.join(bad.secondary, "subdir"))
    with open(os.path.join(bad.secondary, "truncated.qcow2"), "wb") as f:
        f.write(b"QFI\xfb\0\0\0\3")
    mark = LogMark()
    bad.pool.refresh()
    assert bad.pool.vol_names() == ["base.qcow2", "inst.qcow2"], bad.pool.vol_names()
    assert bad.pool.running()
    mark.assert_logged("skipping '%s'" % vmdk, level=3)
    for junk in ("disk.vmdk", "link.img"):
        os.unlink(os.path.join(bad.primary, junk))
    os.rmdir(os.path.join(bad.secondary, "subdir"))
    os.unlink(os.path.join(bad.secondary, "truncated.qcow2"))
    bad.assert_unchanged()


def test_volumes_and_pool_go_away_cleanly(bad):
    """vol-delete of the instance, then the template, pool-destroy,
    pool-delete and pool-undefine all succeed; the tiers are gone."""
    p = bad.pool
    p.vol("inst.qcow2").delete(0)
    p.vol("base.qcow2").delete(0)
    obj = p.obj
    obj.destroy()
    obj.delete(0)
    assert not os.path.exists(bad.primary) and not os.path.exists(bad.secondary)
    obj.undefine()
    assert daemon_alive()
