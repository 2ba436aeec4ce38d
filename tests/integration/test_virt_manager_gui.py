"""virt-manager manages stormpool pools: an end-to-end test in a real window.

The patched virt-manager (_build/virt-manager-VERSION/src, tools/build-virt-manager)
runs under Xvfb, with a private D-Bus session bus (which starts the AT-SPI
accessibility bus) and private XDG config/data/cache/runtime directories,
connected to the private daemons (qemu:///system). The test drives it
through the accessibility tree with dogtail, as virt-manager's own UI tests
(tests/uitests) do:

  * Edit > Connection Details > Storage lists the stormpool pool as a
    "Tiered template pool (stormpool)" with its template and instance;
  * "Create new volume" is enabled for it; its dialog offers the pool's
    templates (and only them) as backing store; Finish creates an instance,
    which virsh vol-dumpxml and qemu-img info show to be a qcow2 overlay in
    the secondary tier backing onto the template;
  * the Add a New Storage Pool wizard creates a stormpool pool from a
    template directory and an instance directory, with the replica policy
    and preparation chosen in it (<stormpool:replica policy='copy'
    prepare='eager'/>); with the defaults it writes no such element, and
    it shows those fields for stormpool pools only.

A screenshot of every step is saved in _build/check-logs/virt-manager/
(with virt-manager's own log). No single wait lasts more than 60 s and the
whole suite is bounded by a watchdog; Xvfb, virt-manager and the D-Bus bus
(with the AT-SPI processes it started) are always killed at the end.

Every name starts with "spv-gui"; pools, volumes and directories are
removed at the end even when a step fails.
"""

import os
import re
import shutil
import signal
import subprocess
import time

from taplib import (Suite, make_tmpdir, qemu_img_info, run, sha256,
                    start_watchdog, template_data_paths, virsh, vol_names, TOP)

# The patched tree of the virt-manager that goes with LIBVIRT
VM_TREE = subprocess.check_output(
    [os.path.join(TOP, "tools", "build-virt-manager"), "--tree"],
    text=True).strip()
ARTIFACTS = os.path.join(TOP, "_build", "check-logs", "virt-manager")
# The cropped screenshots for the documentation go next to the test's
# artifacts; STORMPOOL_UPDATE_DOCS=1 writes them into docs/ instead, so
# that make check never changes tracked files.
DOC_DIR = (os.path.join(TOP, "docs") if os.environ.get("STORMPOOL_UPDATE_DOCS") == "1"
           else os.path.join(TOP, "_build", "check-logs", "virt-manager"))
DOC_SCREENSHOT = os.path.join(DOC_DIR, "virt-manager-create-volume.png")
DOC_WIZARD_SCREENSHOT = os.path.join(DOC_DIR, "virt-manager-pool-wizard.png")
WAIT = 60            # seconds: the longest any single wait may take
SUITE_TIMEOUT = 600  # seconds: the whole suite

POOL = "spv-gui-pool"
WIZARD_POOL = "spv-gui-wizard"
WIZARD_DEFAULT_POOL = "spv-gui-wizard-default"
TEMPLATE = "win10.qcow2"
INSTANCE = "pc01.qcow2"        # made with virsh before virt-manager starts
NEW_INSTANCE = "spv-gui-pc02"  # typed into the dialog; it adds ".qcow2"
CONN_LABEL = "QEMU/KVM"
POOL_DESC = "Tiered template pool (stormpool)"
MiB = 1024 * 1024
GiB = 1024 * MiB

suite = Suite("virt-manager-gui")
print("# virt-manager of %s" % os.path.relpath(VM_TREE, TOP))
root = make_tmpdir("spv-gui-")
suite.cleanup_dir(root)
primary = os.path.join(root, "hdd", "templates")
secondary = os.path.join(root, "ssd", "lab")
wizard_primary = os.path.join(root, "wizard", "templates")
wizard_secondary = os.path.join(root, "wizard", "instances")
default_primary = os.path.join(root, "wizard-default", "templates")
default_secondary = os.path.join(root, "wizard-default", "instances")
template_path = os.path.join(primary, TEMPLATE)
state = {}


# ---- processes ------------------------------------------------------------

# virt-manager defines, builds and starts libvirt's 'default' dir pool
# (/var/lib/libvirt/images) whenever it connects to a system URI that has
# none. The daemons are shared and the host's /var/lib is not ours: run the
# program of the tree with that one step left out.
NO_DEFAULT_POOL = """
import os, runpy, sys
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
import virtinst
virtinst.StoragePool.build_default_pool = staticmethod(lambda conn: None)
runpy.run_path(sys.argv[0], run_name="__main__")
"""

class Session:
    """Xvfb, a D-Bus session bus and virt-manager, each in its own process
    group, so that kill() also ends what they started (the AT-SPI bus
    launcher and registry daemon are children of dbus-daemon)."""

    def __init__(self):
        self.procs = []
        self.env = dict(os.environ)
        self.home = os.path.join(root, "home")

    def spawn(self, name, argv, **kwargs):
        log = open(os.path.join(ARTIFACTS, name + ".log"), "w")
        kwargs.setdefault("stdout", log)
        proc = subprocess.Popen(argv, stderr=log, stdin=subprocess.DEVNULL,
                                env=self.env, start_new_session=True, **kwargs)
        self.procs.append((name, proc))
        return proc

    def read_fd_line(self, fd, what):
        """The first line written to the pipe @fd, within WAIT seconds."""
        import select
        deadline = time.monotonic() + WAIT
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError("%s did not start within %d s" % (what, WAIT))
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError("%s exited at startup" % what)
            data += chunk
        os.close(fd)
        return data.decode().strip()

    def start_display_and_bus(self):
        for sub in ("config", "data", "cache", "runtime"):
            os.makedirs(os.path.join(self.home, sub), mode=0o700, exist_ok=True)
        self.env.update({
            "HOME": self.home,
            "XDG_CONFIG_HOME": os.path.join(self.home, "config"),
            "XDG_DATA_HOME": os.path.join(self.home, "data"),
            "XDG_CACHE_HOME": os.path.join(self.home, "cache"),
            "XDG_RUNTIME_DIR": os.path.join(self.home, "runtime"),
            "LANG": "C.UTF-8",
        })
        for var in ("NO_AT_BRIDGE", "WAYLAND_DISPLAY", "GSETTINGS_BACKEND",
                    "DBUS_SESSION_BUS_ADDRESS", "DISPLAY"):
            self.env.pop(var, None)

        # Xvfb picks a free display number and writes it to the pipe.
        rfd, wfd = os.pipe()
        self.spawn("xvfb", ["Xvfb", "-displayfd", str(wfd), "-screen", "0",
                            "1280x1024x24", "-nolisten", "tcp", "-noreset"],
                   pass_fds=[wfd])
        os.close(wfd)
        self.env["DISPLAY"] = ":" + self.read_fd_line(rfd, "Xvfb")

        # The bus gets DISPLAY: the AT-SPI registry it starts sends the
        # synthesized mouse events to that display.
        rfd, wfd = os.pipe()
        self.spawn("dbus", ["dbus-daemon", "--session", "--nofork", "--nopidfile",
                            "--print-address=%d" % wfd], pass_fds=[wfd])
        os.close(wfd)
        self.env["DBUS_SESSION_BUS_ADDRESS"] = self.read_fd_line(rfd, "dbus-daemon")

        # dogtail refuses to run unless accessibility is switched on
        subprocess.run(["gsettings", "set", "org.gnome.desktop.interface",
                        "toolkit-accessibility", "true"],
                       env=self.env, check=True, timeout=WAIT)
        os.environ.update({k: self.env[k] for k in (
            "DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "HOME", "XDG_CONFIG_HOME",
            "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR")})

    def start_virt_manager(self):
        return self.spawn("virt-manager.stdout", [
            "/usr/bin/python3", "-c", NO_DEFAULT_POOL,
            os.path.join(VM_TREE, "virt-manager"),
            "--no-fork", "--connect", "qemu:///system"])

    def kill(self):
        # A GLib D-Bus connection of this process to the session bus
        # (dogtail's and pyatspi's) raises SIGTERM when the bus goes away:
        # the test outlives the session it ends.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            # what the group started (the AT-SPI daemons of the bus, say)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs = []
        vmlog = os.path.join(self.home, "cache", "virt-manager", "virt-manager.log")
        if os.path.exists(vmlog):
            shutil.copy(vmlog, os.path.join(ARTIFACTS, "virt-manager.log"))


session = Session()
watchdog = start_watchdog(suite, SUITE_TIMEOUT, before_exit=session.kill)


# ---- helpers --------------------------------------------------------------

def screenshot(name):
    path = os.path.join(ARTIFACTS, name + ".png")
    run(["import", "-display", session.env["DISPLAY"], "-window", "root", path])
    state.setdefault("screenshots", []).append(path)
    return path


def crop_to_window(src, window, dest):
    """Copy the part of the screenshot @src that shows @window to @dest."""
    (x, y), (w, h) = window.position, window.size
    run(["convert", src, "-crop", "%dx%d+%d+%d" % (w, h, max(x, 0), max(y, 0)),
         "+repage", dest])


def wait_for(cond, what, timeout=WAIT):
    """Poll @cond until it returns something true; fail after @timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            ret = cond()
            if ret:
                return ret
        except Exception as exc:  # a node going away while we look at it
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %d s waiting for %s%s" %
                                 (timeout, what, " (%s)" % last if last else ""))
        time.sleep(0.25)


def find(parent, name=None, role=None, showing=False, timeout=WAIT):
    """The first descendant of @parent with @name and @role, waiting for it."""
    from dogtail import predicate

    def look():
        pred = predicate.GenericPredicate(name=name, roleName=role)
        for node in parent.findChildren(pred):
            if not showing or node.showing:
                return node
    return wait_for(look, "%s %r" % (role or "node", name), timeout)


def find_labelled(parent, label, role):
    """The widget with @role that the label @label names (labelled-by)."""
    def look():
        for node in parent.findChildren(lambda n: n.roleName == role):
            labels = node.labeller  # None, a node or a list of nodes
            if labels is not None and not isinstance(labels, list):
                labels = [labels]
            if any(lab.name == label for lab in labels or []):
                return node
    return wait_for(look, "%s labelled %r" % (role, label))


def find_window(name, role=None):
    app = state["app"]
    return wait_for(lambda: app.findChild(
        lambda n: n.name == name and (role is None or n.roleName == role) and n.showing,
        recursive=False, retry=False, requireResult=False), "window %r" % name)


def click(node):
    """Activate a button or menu item through its AT-SPI action."""
    wait_for(lambda: node.sensitive, "%r to be sensitive" % node.name)
    node.doActionNamed("click")


def select_from_combo(combo, label, shot=None):
    """Pop up the list of @combo, as a person would, and choose @label."""
    combo.doActionNamed("press")
    item = find(combo, role="menu item", name=label, showing=True)
    if shot:
        time.sleep(0.5)  # let the popup draw
        screenshot(shot)
    item.doActionNamed("click")
    wait_for(lambda: not item.showing, "the list of %r to close" % combo.name)


def cell_names(table):
    return [c.name for c in table.findChildren(lambda n: n.roleName == "table cell")]


# ---- fixture: a pool with a template and an instance -----------------------

@suite.step("setup: a stormpool pool with a template and an instance (virsh)")
def _():
    suite.cleanup_pool(POOL)
    os.makedirs(ARTIFACTS, exist_ok=True)
    for old in os.listdir(ARTIFACTS):
        os.unlink(os.path.join(ARTIFACTS, old))
    virsh("pool-define-as", POOL, "stormpool", "--source-path", primary,
          "--target", secondary)
    virsh("pool-build", POOL)
    virsh("pool-start", POOL)
    run(["qemu-img", "create", "-q", "-f", "qcow2", template_path, "64M"])
    virsh("pool-refresh", POOL)
    virsh("vol-create-as", POOL, INSTANCE, "64M", "--format", "qcow2",
          "--backing-vol", TEMPLATE, "--backing-vol-format", "qcow2")
    assert vol_names(POOL) == sorted([TEMPLATE, INSTANCE])
    state["had_default_pool"] = "default" in virsh("pool-list", "--all", "--name").split()


# ---- virt-manager ---------------------------------------------------------

@suite.step("virt-manager of the patched tree runs under Xvfb with a private D-Bus "
            "session and the AT-SPI bus, connected to qemu:///system")
def _():
    assert os.access(os.path.join(VM_TREE, "virt-manager"), os.X_OK), \
        "no patched virt-manager: run 'make virt-manager'"
    suite.cleanup(session.kill)
    session.start_display_and_bus()
    vm = session.start_virt_manager()

    from dogtail import config, tree
    config.config.logDebugToStdOut = False
    config.config.logDebugToFile = False
    config.config.actionDelay = 0.3
    config.config.defaultDelay = 0.3
    config.config.searchBackoffDuration = 0.25
    config.config.searchCutoffCount = 8

    def app():
        assert vm.poll() is None, "virt-manager exited with status %s" % vm.returncode
        return tree.root.findChild(
            lambda n: n.roleName == "application" and n.name == "virt-manager",
            recursive=False, retry=False, requireResult=False)
    state["app"] = wait_for(app, "virt-manager on the accessibility bus")
    manager = find_window("Virtual Machine Manager", "frame")
    cell = find(manager, role="table cell", name=CONN_LABEL)
    # "QEMU/KVM - Not Connected" while it connects or if it fails
    wait_for(lambda: cell.name == CONN_LABEL and cell.showing, "the connection")
    assert "default" not in virsh("pool-list", "--all", "--name").split() or \
        state["had_default_pool"], "virt-manager defined a 'default' pool"
    state["manager"] = manager
    state["conn_cell"] = cell
    screenshot("01-manager")


@suite.step("Connection Details > Storage lists the pool as '%s'" % POOL_DESC)
def _():
    manager = state["manager"]
    state["conn_cell"].click()
    click(find(manager, role="menu item", name="Connection Details"))
    host = find_window("%s - Connection Details" % CONN_LABEL, "frame")
    find(host, role="page tab", name="Storage").click()
    pools = find(host, role="table", name="pool-list", showing=True)
    cell = wait_for(lambda: [c for c in pools.findChildren(
        lambda n: n.roleName == "table cell" and n.name.startswith(POOL + "\n"))],
        "the pool in the pool list")[0]
    assert POOL_DESC in cell.name, cell.name
    state["host"] = host
    state["pool_cell"] = cell
    screenshot("02-storage-tab")


@suite.step("selecting the pool shows its template and instance; "
            "'Create new volume' is enabled")
def _():
    host = state["host"]
    state["pool_cell"].click()
    vols = find(host, role="table", name="vol-list", showing=True)
    wait_for(lambda: {TEMPLATE, INSTANCE} <= set(cell_names(vols)),
             "%s and %s in the volume list" % (TEMPLATE, INSTANCE))
    newvol = find(host, role="push button", name="vol-new")
    wait_for(lambda: newvol.sensitive, "'Create new volume' to be enabled")
    assert "does not support" not in (newvol.description or "")
    state["vols"] = vols
    screenshot("03-pool-volumes")


@suite.step("the Create new volume dialog offers the pool's templates as backing store")
def _():
    host = state["host"]
    click(find(host, role="push button", name="vol-new"))
    dialog = find_window("Add a Storage Volume", "frame")
    state["dialog"] = dialog
    name = find_labelled(dialog, "Name:", "text")
    name.text = NEW_INSTANCE
    fmt = find_labelled(dialog, "Format:", "combo box")
    wait_for(lambda: fmt.name == "qcow2", "format qcow2 (the default)")
    backing = find(dialog, role="text", name="backing-store", showing=True)
    combo = backing.parent
    assert combo.roleName == "combo box", combo.roleName
    offered = [n.name for n in combo.findChildren(lambda n: n.roleName == "menu item")]
    assert offered == [template_path], offered  # the template, not the instance
    select_from_combo(combo, template_path, shot="04-backing-store-templates")
    wait_for(lambda: backing.text == template_path, "the template in the backing store field")
    capacity = find_labelled(dialog, "Capacity:", "spin button")
    capacity.value = 1.0
    wait_for(lambda: capacity.text.startswith("1.0"), "a capacity of 1 GiB")
    screenshot("05-create-volume-dialog")
    crop_to_window(state["screenshots"][-2], dialog, DOC_SCREENSHOT)


@suite.step("Finish creates the instance and the storage tab lists it")
def _():
    dialog = state["dialog"]
    suite.cleanup(run, ["virsh", "-q", "vol-delete", "--pool", POOL,
                        NEW_INSTANCE + ".qcow2"], False)
    click(find(dialog, role="push button", name="Finish"))
    wait_for(lambda: not dialog.showing, "the dialog to close")
    wait_for(lambda: NEW_INSTANCE + ".qcow2" in cell_names(state["vols"]),
             "the new volume in the volume list")
    screenshot("06-instance-created")


@suite.step("virsh vol-dumpxml and qemu-img info: the new volume is a qcow2 overlay "
            "in the secondary tier backing onto the template")
def _():
    name = NEW_INSTANCE + ".qcow2"
    path = os.path.join(secondary, name)
    xml = virsh("vol-dumpxml", "--pool", POOL, name)
    assert "<path>%s</path>" % path in xml, xml
    assert "<format type='qcow2'/>" in xml, xml
    backing = xml.split("<backingStore>")[1]
    bpath = backing.split("<path>")[1].split("</path>")[0]
    assert "<format type='qcow2'/>" in backing, xml
    # the template, or its replica in the secondary tier (replica policy)
    template_files = template_data_paths(POOL, template_path)
    assert bpath in template_files, (bpath, template_files)
    assert os.path.samefile(bpath, template_path) or \
        sha256(bpath) == sha256(template_path), bpath
    info = qemu_img_info(path)
    assert info["format"] == "qcow2", info
    assert info["virtual-size"] == 1 * GiB, info
    assert info["full-backing-filename"] == bpath, info
    assert info["backing-filename-format"] == "qcow2", info
    assert sorted(os.listdir(primary)) == [TEMPLATE]


def open_pool_wizard(name):
    """The Add a New Storage Pool wizard, opened from the storage tab, with
    @name typed in."""
    click(find(state["host"], role="push button", name="pool-add"))
    wizard = find_window("Add a New Storage Pool", "frame")
    find_labelled(wizard, "Name:", "text").text = name
    return wizard


def fill_in_stormpool(wizard, primary_dir, secondary_dir):
    ptype = find_labelled(wizard, "Type:", "combo box")
    select_from_combo(ptype, "stormpool: " + POOL_DESC)
    wait_for(lambda: ptype.name == "stormpool", "the stormpool type")
    # the rows of the type, labelled for its tiers
    find(wizard, role="label", name="Template Directory:", showing=True)
    find(wizard, role="label", name="Instance Directory:", showing=True)
    source = find(wizard, role="text", name="pool-source-path-text", showing=True)
    target = find_labelled(wizard, "Instance Directory:", "text")
    source.text = primary_dir
    target.text = secondary_dir


def replica_fields(wizard):
    """The Replica Policy combo and the check box for prepare='eager'."""
    policy = find_labelled(wizard, "Replica Policy:", "combo box")
    eager = find(wizard, role="check box", name="Prepare replicas when the pool starts")
    return policy, eager


def finish_pool_wizard(wizard, name):
    click(find(wizard, role="push button", name="Finish"))
    wait_for(lambda: not wizard.showing, "the wizard to close")
    pools = find(state["host"], role="table", name="pool-list", showing=True)
    wait_for(lambda: any(c.startswith(name + "\n") for c in cell_names(pools)),
             "the new pool in the pool list")


def assert_stormpool_created(name, primary_dir, secondary_dir):
    """@name is a running, autostarted, built stormpool pool with these
    tiers; returns its inactive XML."""
    xml = virsh("pool-dumpxml", "--inactive", name)
    assert "<pool type='stormpool'" in xml, xml
    assert "<dir path='%s'/>" % primary_dir in xml, xml
    assert "<path>%s</path>" % secondary_dir in xml, xml
    info = virsh("pool-info", name)
    assert "running" in info and "Autostart:      yes" in info, info
    # built: both tiers exist
    assert os.path.isdir(primary_dir) and os.path.isdir(secondary_dir)
    return xml


@suite.step("the pool wizard creates a stormpool pool from a template directory "
            "and an instance directory, with replica policy Copy, prepared when "
            "the pool starts")
def _():
    suite.cleanup_pool(WIZARD_POOL)
    wizard = open_pool_wizard(WIZARD_POOL)
    fill_in_stormpool(wizard, wizard_primary, wizard_secondary)
    policy, eager = replica_fields(wizard)
    assert policy.showing and eager.showing
    # the defaults: Automatic, prepared lazily
    wait_for(lambda: policy.name == "auto", "replica policy Automatic (the default)")
    assert not eager.checked and eager.sensitive
    screenshot("07-create-pool-wizard")
    # with policy None there are no replicas to prepare
    select_from_combo(policy, "None")
    wait_for(lambda: policy.name == "none", "replica policy None")
    wait_for(lambda: not eager.sensitive, "the check box to be insensitive")
    select_from_combo(policy, "Copy", shot="08-pool-wizard-replica-policies")
    wait_for(lambda: policy.name == "copy", "replica policy Copy")
    click(eager)
    wait_for(lambda: eager.checked, "the check box to be checked")
    time.sleep(0.3)  # let the check mark draw
    shot = screenshot("09-pool-wizard-replica")
    crop_to_window(shot, wizard, DOC_WIZARD_SCREENSHOT)
    # the XML tab shows the element the choices make
    find(wizard, role="page tab", name="XML").click()
    wait_for(lambda: [t for t in wizard.findChildren(
        lambda n: n.roleName == "text" and n.showing)
        if "policy=\"copy\" prepare=\"eager\"/>" in (t.text or "")],
        "<stormpool:replica policy=\"copy\" prepare=\"eager\"/> in the XML tab")
    find(wizard, role="page tab", name="Details").click()
    wait_for(lambda: policy.showing, "the Details tab")
    finish_pool_wizard(wizard, WIZARD_POOL)
    screenshot("10-pool-created")
    xml = assert_stormpool_created(WIZARD_POOL, wizard_primary, wizard_secondary)
    assert "<stormpool:replica policy='copy' prepare='eager'/>" in xml, xml
    assert "xmlns:stormpool='urn:stormpool:pool:1.0'" in xml, xml


@suite.step("the pool wizard shows the replica fields for stormpool pools only and "
            "with the defaults (Automatic, not prepared) writes no replica element")
def _():
    suite.cleanup_pool(WIZARD_DEFAULT_POOL)
    wizard = open_pool_wizard(WIZARD_DEFAULT_POOL)
    # the wizard opens on another type ('dir'): no replica fields
    ptype = find_labelled(wizard, "Type:", "combo box")
    assert ptype.name != "stormpool", ptype.name
    policy, eager = replica_fields(wizard)
    label = find(wizard, role="label", name="Replica Policy:")
    assert not (policy.showing or eager.showing or label.showing)
    fill_in_stormpool(wizard, default_primary, default_secondary)
    wait_for(lambda: policy.showing and eager.showing and label.showing,
             "the replica fields")
    # reset to the defaults, whatever the last use of the wizard left
    wait_for(lambda: policy.name == "auto", "replica policy Automatic (the default)")
    assert not eager.checked and eager.sensitive
    finish_pool_wizard(wizard, WIZARD_DEFAULT_POOL)
    xml = assert_stormpool_created(WIZARD_DEFAULT_POOL, default_primary, default_secondary)
    # (a running pool's status lists its replicas, <stormpool:replicas>)
    assert not re.search(r"<stormpool:replica[\s/>]", xml), xml


@suite.step("virt-manager, Xvfb and the D-Bus session are gone at the end")
def _():
    procs = [proc for name, proc in session.procs]
    session.kill()
    assert all(proc.poll() is not None for proc in procs)
    for name in ("01-manager", "05-create-volume-dialog", "06-instance-created",
                 "09-pool-wizard-replica"):
        assert os.path.getsize(os.path.join(ARTIFACTS, name + ".png")) > 0
    print("# screenshots: %s" % ", ".join(
        os.path.relpath(p, TOP) for p in state.get("screenshots", [])))


watchdog.cancel()
suite.finish()
