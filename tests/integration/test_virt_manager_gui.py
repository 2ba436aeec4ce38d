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
module is bounded by a watchdog; Xvfb, virt-manager and the D-Bus bus
(with the AT-SPI processes it started) are always killed at the end.

One scenario per test. Starting the window is slow, so one session (and
the pool spt-gui-pool with its template and instance, made with virsh
before virt-manager starts) serves the whole module (module-scoped
fixtures), and so does the instance created through the dialog, which the
two tests that look at it do not change; each test finds its windows from
whatever state the session is in, makes what else it needs (the wizard's
pools) and removes it at its end. The last test ends the session.
Run alone:

    LIBVIRT=9.0.0 tools/virt-env exec /usr/bin/python3 -m pytest \\
        tests/integration/test_virt_manager_gui.py -k wizard
"""

import collections
import faulthandler
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import stormpool_client as sp
from stormpool_client import qemu_img_info, run, sha256, virsh

TOP = sp.TOP
TEST_TMP = os.path.join(TOP, "_build", "test-tmp")
ARTIFACTS = os.path.join(TOP, "_build", "check-logs", "virt-manager")
# The cropped screenshots for the documentation go next to the test's
# artifacts; STORMPOOL_UPDATE_DOCS=1 writes them into docs/ instead, so
# that make check never changes tracked files.
DOC_DIR = (os.path.join(TOP, "docs") if os.environ.get("STORMPOOL_UPDATE_DOCS") == "1"
           else os.path.join(TOP, "_build", "check-logs", "virt-manager"))
DOC_SCREENSHOT = os.path.join(DOC_DIR, "virt-manager-create-volume.png")
DOC_WIZARD_SCREENSHOT = os.path.join(DOC_DIR, "virt-manager-pool-wizard.png")
WAIT = 60            # seconds: the longest any single wait may take
SUITE_TIMEOUT = 600  # seconds: the whole module, from the session's start

POOL = "spt-gui-pool"
TEMPLATE = "win10.qcow2"
INSTANCE = "pc01.qcow2"        # made with virsh before virt-manager starts
CONN_LABEL = "QEMU/KVM"
HOST_WINDOW = "%s - Connection Details" % CONN_LABEL
POOL_DESC = "Tiered template pool (stormpool)"
MiB = 1024 * 1024
GiB = 1024 * MiB

# The module's own watchdog (which ends the session first) fires before
# the per-test limit of conftest.py would.
pytestmark = pytest.mark.time_limit(SUITE_TIMEOUT + 60)


def short(request, length=24):
    return re.sub(r"[^A-Za-z0-9]+", "-",
                  request.node.name.replace("test_", "", 1))[:length].strip("-")


def remove_pool(name):
    run(["virsh", "-q", "pool-destroy", name], check=False)
    run(["virsh", "-q", "pool-undefine", name], check=False)


def pool_names():
    return virsh("pool-list", "--all", "--name").split()


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

SESSION_ENV = ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS", "HOME", "XDG_CONFIG_HOME",
               "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR")


class Session:
    """Xvfb, a D-Bus session bus and virt-manager, each in its own process
    group, so that kill() also ends what they started (the AT-SPI bus
    launcher and registry daemon are children of dbus-daemon)."""

    def __init__(self, root, vm_tree):
        self.procs = []
        self.env = dict(os.environ)
        self.home = os.path.join(root, "home")
        self.vm_tree = vm_tree
        self.saved_env = {k: os.environ.get(k) for k in SESSION_ENV}
        self.screenshots = []
        self.app = self.manager = self.conn_cell = self.vm = None

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
        os.environ.update({k: self.env[k] for k in SESSION_ENV})

    def start_virt_manager(self):
        self.vm = self.spawn("virt-manager.stdout", [
            "/usr/bin/python3", "-c", NO_DEFAULT_POOL,
            os.path.join(self.vm_tree, "virt-manager"),
            "--no-fork", "--connect", "qemu:///system"])
        return self.vm

    def kill(self, from_main_thread=True):
        # A GLib D-Bus connection of this process to the session bus
        # (dogtail's and pyatspi's) raises SIGTERM when the bus goes away:
        # the test outlives the session it ends. (Only the main thread may
        # set a handler; the watchdog's thread exits the process anyway.)
        if from_main_thread:
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
        for k, v in self.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_watchdog(seconds, session):
    """Bound the module in time: if it still runs after @seconds (a call
    into a hung AT-SPI bus or daemon never returns, say), print every
    thread's traceback, end the session's processes and exit at once."""
    def expire():
        sys.__stderr__.write("# the virt-manager GUI tests still run after %d s: "
                             "ending the session and the run\n" % seconds)
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        try:
            session.kill(from_main_thread=False)
        except Exception as exc:
            sys.__stderr__.write("# watchdog: %s\n" % exc)
        sys.__stderr__.flush()
        os._exit(1)
    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


# ---- helpers --------------------------------------------------------------

def screenshot(session, name):
    path = os.path.join(ARTIFACTS, name + ".png")
    run(["import", "-display", session.env["DISPLAY"], "-window", "root", path])
    assert os.path.getsize(path) > 0, "empty screenshot %s" % path
    session.screenshots.append(path)
    return path


def crop_to_window(src, window, dest):
    """Copy the part of the screenshot @src that shows @window to @dest."""
    (x, y), (w, h) = window.position, window.size
    run(["convert", src, "-crop", "%dx%d+%d+%d" % (w, h, max(x, 0), max(y, 0)),
         "+repage", dest])


def wait_until(cond, what, timeout=WAIT):
    """Poll @cond until it returns something true; fail after @timeout s.
    An exception of @cond (a node going away while we look at it) counts
    as not yet."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            ret = cond()
            if ret:
                return ret
        except Exception as exc:
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
    return wait_until(look, "%s %r" % (role or "node", name), timeout)


def find_labelled(parent, label, role):
    """The widget with @role that the label @label names (labelled-by)."""
    def look():
        for node in parent.findChildren(lambda n: n.roleName == role):
            labels = node.labeller  # None, a node or a list of nodes
            if labels is not None and not isinstance(labels, list):
                labels = [labels]
            if any(lab.name == label for lab in labels or []):
                return node
    return wait_until(look, "%s labelled %r" % (role, label))


def showing_window(session, name, role=None):
    """The window @name of virt-manager if it is showing, else None."""
    return session.app.findChild(
        lambda n: n.name == name and (role is None or n.roleName == role) and n.showing,
        recursive=False, retry=False, requireResult=False)


def find_window(session, name, role=None):
    return wait_until(lambda: showing_window(session, name, role), "window %r" % name)


def click(node):
    """Activate a button or menu item through its AT-SPI action."""
    wait_until(lambda: node.sensitive, "%r to be sensitive" % node.name)
    node.doActionNamed("click")


def select_from_combo(session, combo, label, shot=None):
    """Pop up the list of @combo, as a person would, and choose @label;
    with @shot, a screenshot of the list. Returns the screenshot's path."""
    combo.doActionNamed("press")
    item = find(combo, role="menu item", name=label, showing=True)
    path = None
    if shot:
        time.sleep(0.5)  # let the popup draw
        path = screenshot(session, shot)
    item.doActionNamed("click")
    wait_until(lambda: not item.showing, "the list of %r to close" % combo.name)
    return path


def cell_names(table):
    return [c.name for c in table.findChildren(lambda n: n.roleName == "table cell")]


Storage = collections.namedtuple("Storage", "host pools")


def storage_tab(session):
    """The Storage tab of Connection Details, opened from the manager's
    Edit menu unless its window already shows."""
    host = showing_window(session, HOST_WINDOW, "frame")
    if host is None:
        session.conn_cell.click()
        click(find(session.manager, role="menu item", name="Connection Details"))
        host = find_window(session, HOST_WINDOW, "frame")
    find(host, role="page tab", name="Storage").click()
    pools = find(host, role="table", name="pool-list", showing=True)
    return Storage(host, pools)


def pool_cell(storage, name):
    return wait_until(lambda: [c for c in storage.pools.findChildren(
        lambda n: n.roleName == "table cell" and n.name.startswith(name + "\n"))],
        "%s in the pool list" % name)[0]


def select_pool(session):
    """The Storage tab with the pool selected; its volume list."""
    storage = storage_tab(session)
    pool_cell(storage, POOL).click()
    vols = find(storage.host, role="table", name="vol-list", showing=True)
    wait_until(lambda: {TEMPLATE, INSTANCE} <= set(cell_names(vols)),
               "%s and %s in the volume list" % (TEMPLATE, INSTANCE))
    return storage, vols


def fill_volume_dialog(session, gui_pool, name, shot_list=None):
    """Open the Create new volume dialog for the pool and fill it in: @name,
    format qcow2 (the default), the template as backing store chosen from
    the combo's list, 1 GiB. Returns (dialog, the list the combo offered,
    the screenshot of the list if @shot_list names one)."""
    storage, _ = select_pool(session)
    click(find(storage.host, role="push button", name="vol-new"))
    dialog = find_window(session, "Add a Storage Volume", "frame")
    find_labelled(dialog, "Name:", "text").text = name
    fmt = find_labelled(dialog, "Format:", "combo box")
    wait_until(lambda: fmt.name == "qcow2", "format qcow2 (the default)")
    backing = find(dialog, role="text", name="backing-store", showing=True)
    combo = backing.parent
    assert combo.roleName == "combo box", combo.roleName
    offered = [n.name for n in combo.findChildren(lambda n: n.roleName == "menu item")]
    shot = select_from_combo(session, combo, gui_pool.template_path, shot=shot_list)
    wait_until(lambda: backing.text == gui_pool.template_path,
               "the template in the backing store field")
    capacity = find_labelled(dialog, "Capacity:", "spin button")
    capacity.value = 1.0
    wait_until(lambda: capacity.text.startswith("1.0"), "a capacity of 1 GiB")
    return dialog, offered, shot


def open_pool_wizard(session, name):
    """The Add a New Storage Pool wizard, opened from the storage tab, with
    @name typed in."""
    click(find(storage_tab(session).host, role="push button", name="pool-add"))
    wizard = find_window(session, "Add a New Storage Pool", "frame")
    find_labelled(wizard, "Name:", "text").text = name
    return wizard


def fill_in_stormpool(session, wizard, primary_dir, secondary_dir):
    ptype = find_labelled(wizard, "Type:", "combo box")
    select_from_combo(session, ptype, "stormpool: " + POOL_DESC)
    wait_until(lambda: ptype.name == "stormpool", "the stormpool type")
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


def finish_pool_wizard(session, wizard, name):
    click(find(wizard, role="push button", name="Finish"))
    wait_until(lambda: not wizard.showing, "the wizard to close")
    pools = find(storage_tab(session).host, role="table", name="pool-list", showing=True)
    wait_until(lambda: any(c.startswith(name + "\n") for c in cell_names(pools)),
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


# ---- fixtures -----------------------------------------------------------------

GuiPool = collections.namedtuple("GuiPool", "root primary secondary template_path "
                                            "had_default_pool")


@pytest.fixture(scope="module")
def gui_pool(prefix):
    """The module's stormpool pool spt-gui-pool (virsh pool-define-as,
    pool-build, pool-start) with the template win10.qcow2 and its instance
    pc01.qcow2; whether a 'default' pool was defined before virt-manager
    ran. Pool and directory go at the end of the module."""
    os.makedirs(TEST_TMP, exist_ok=True)
    root = tempfile.mkdtemp(prefix="spt-gui-", dir=TEST_TMP)
    primary = os.path.join(root, "hdd", "templates")
    secondary = os.path.join(root, "ssd", "lab")
    remove_pool(POOL)
    try:
        virsh("pool-define-as", POOL, "stormpool", "--source-path", primary,
              "--target", secondary)
        virsh("pool-build", POOL)
        virsh("pool-start", POOL)
        template_path = os.path.join(primary, TEMPLATE)
        run(["qemu-img", "create", "-q", "-f", "qcow2", template_path, "64M"])
        virsh("pool-refresh", POOL)
        virsh("vol-create-as", POOL, INSTANCE, "64M", "--format", "qcow2",
              "--backing-vol", TEMPLATE, "--backing-vol-format", "qcow2")
        yield GuiPool(root, primary, secondary, template_path,
                      "default" in pool_names())
    finally:
        remove_pool(POOL)
        shutil.rmtree(root, ignore_errors=True)
    assert POOL not in pool_names(), "%s left" % POOL


@pytest.fixture(scope="module")
def session(gui_pool):
    """virt-manager of the patched tree under Xvfb with a private D-Bus
    session and the AT-SPI bus, connected to qemu:///system: its
    application node, the manager window and the connection's row, once
    connected. Everything it started is killed at the end (or by the
    module's watchdog), and nothing of it is left running."""
    vm_tree = sp.virt_manager_tree()
    print("# virt-manager of %s" % os.path.relpath(vm_tree, TOP))
    assert os.access(os.path.join(vm_tree, "virt-manager"), os.X_OK), \
        "no patched virt-manager: run 'make virt-manager'"
    os.makedirs(ARTIFACTS, exist_ok=True)
    for old in os.listdir(ARTIFACTS):
        os.unlink(os.path.join(ARTIFACTS, old))
    s = Session(gui_pool.root, vm_tree)
    watchdog = start_watchdog(SUITE_TIMEOUT, s)
    try:
        s.start_display_and_bus()
        vm = s.start_virt_manager()

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
        s.app = wait_until(app, "virt-manager on the accessibility bus")
        s.manager = find_window(s, "Virtual Machine Manager", "frame")
        s.conn_cell = find(s.manager, role="table cell", name=CONN_LABEL)
        # "QEMU/KVM - Not Connected" while it connects or if it fails
        wait_until(lambda: s.conn_cell.name == CONN_LABEL and s.conn_cell.showing,
                   "the connection")
        yield s
        procs = [proc for name, proc in s.procs]
        s.kill()
        assert all(proc.poll() is not None for proc in procs)
    finally:
        s.kill()
        watchdog.cancel()


@pytest.fixture(scope="module")
def gui_instance(session, gui_pool):
    """An instance of the template created through the Create new volume
    dialog (Finish), 1 GiB, named spt-gui-pc02.qcow2: made once for the
    tests that look at it, which do not change it; vol-deleted at the end
    of the module."""
    name = "spt-gui-pc02"       # the dialog adds ".qcow2"
    volume = name + ".qcow2"
    run(["virsh", "-q", "vol-delete", "--pool", POOL, volume], check=False)
    try:
        dialog, _, _ = fill_volume_dialog(session, gui_pool, name)
        click(find(dialog, role="push button", name="Finish"))
        wait_until(lambda: not dialog.showing, "the dialog to close")
        yield volume
    finally:
        run(["virsh", "-q", "vol-delete", "--pool", POOL, volume], check=False)
    assert not os.path.exists(os.path.join(gui_pool.secondary, volume))


@pytest.fixture
def wizard_pool(request, workdir):
    """(name, template dir, instance dir) for a pool a test makes with the
    wizard; the pool goes at the end of the test, its directories with the
    test's directory."""
    name = "spt-gui-%s" % short(request)
    remove_pool(name)
    yield (name, os.path.join(workdir, "templates"), os.path.join(workdir, "instances"))
    remove_pool(name)
    assert name not in pool_names(), "%s left" % name


# ---- the tests ------------------------------------------------------------------

def test_pool_has_a_template_and_an_instance(gui_pool):
    """The pool made with virsh for the window holds the template and its
    instance."""
    assert sp.vol_names(POOL) == sorted([TEMPLATE, INSTANCE])


def test_virt_manager_runs_connected(session, gui_pool):
    """virt-manager of the patched tree runs under Xvfb with a private D-Bus
    session and the AT-SPI bus, connected to qemu:///system, and defined no
    'default' pool."""
    assert session.vm.poll() is None, "virt-manager exited"
    assert session.conn_cell.name == CONN_LABEL and session.conn_cell.showing
    assert "default" not in pool_names() or gui_pool.had_default_pool, \
        "virt-manager defined a 'default' pool"
    screenshot(session, "01-manager")


def test_storage_tab_lists_the_pool(session):
    """Connection Details > Storage lists the pool as 'Tiered template pool
    (stormpool)'."""
    cell = pool_cell(storage_tab(session), POOL)
    assert POOL_DESC in cell.name, cell.name
    screenshot(session, "02-storage-tab")


def test_selected_pool_shows_its_volumes_and_create_is_enabled(session):
    """Selecting the pool shows its template and instance; 'Create new
    volume' is enabled."""
    storage, _ = select_pool(session)
    newvol = find(storage.host, role="push button", name="vol-new")
    wait_until(lambda: newvol.sensitive, "'Create new volume' to be enabled")
    assert "does not support" not in (newvol.description or "")
    screenshot(session, "03-pool-volumes")


def test_create_volume_dialog_offers_the_templates(session, gui_pool):
    """The Create new volume dialog offers the pool's templates, and only
    them (not the instance), as backing store; the dialog filled in is the
    documentation's picture. Cancelled at the end."""
    dialog, offered, shot = fill_volume_dialog(session, gui_pool, "pc02",
                                               shot_list="04-backing-store-templates")
    try:
        assert offered == [gui_pool.template_path], offered
        screenshot(session, "05-create-volume-dialog")
        crop_to_window(shot, dialog, DOC_SCREENSHOT)
    finally:
        click(find(dialog, role="push button", name="Cancel"))
        wait_until(lambda: not dialog.showing, "the dialog to close")
    assert not os.path.exists(os.path.join(gui_pool.secondary, "pc02.qcow2"))


def test_finish_creates_the_instance(session, gui_instance):
    """Finish in the Create new volume dialog creates the instance, and the
    storage tab lists it."""
    _, vols = select_pool(session)
    wait_until(lambda: gui_instance in cell_names(vols), "the new volume in the volume list")
    screenshot(session, "06-instance-created")


def test_new_volume_is_an_overlay_of_the_template(gui_pool, gui_instance):
    """virsh vol-dumpxml and qemu-img info: the volume the dialog created is
    a 1 GiB qcow2 overlay in the secondary tier backing onto the template
    (or its replica)."""
    path = os.path.join(gui_pool.secondary, gui_instance)
    xml = virsh("vol-dumpxml", "--pool", POOL, gui_instance)
    assert "<path>%s</path>" % path in xml, xml
    assert "<format type='qcow2'/>" in xml, xml
    backing = xml.split("<backingStore>")[1]
    bpath = backing.split("<path>")[1].split("</path>")[0]
    assert "<format type='qcow2'/>" in backing, xml
    # the template, or its replica in the secondary tier (replica policy)
    template_files = sp.template_data_paths(POOL, gui_pool.template_path)
    assert bpath in template_files, (bpath, template_files)
    assert os.path.samefile(bpath, gui_pool.template_path) or \
        sha256(bpath) == sha256(gui_pool.template_path), bpath
    info = qemu_img_info(path)
    assert info["format"] == "qcow2", info
    assert info["virtual-size"] == 1 * GiB, info
    assert info["full-backing-filename"] == bpath, info
    assert info["backing-filename-format"] == "qcow2", info
    assert sp.listdir(gui_pool.primary) == [TEMPLATE]


def test_pool_wizard_creates_a_copy_eager_pool(session, wizard_pool):
    """The pool wizard creates a stormpool pool from a template directory
    and an instance directory, with replica policy Copy, prepared when the
    pool starts (policy None makes the check box insensitive; the XML tab
    shows the element)."""
    name, primary_dir, secondary_dir = wizard_pool
    wizard = open_pool_wizard(session, name)
    fill_in_stormpool(session, wizard, primary_dir, secondary_dir)
    policy, eager = replica_fields(wizard)
    assert policy.showing and eager.showing
    # the defaults: Automatic, prepared lazily
    wait_until(lambda: policy.name == "auto", "replica policy Automatic (the default)")
    assert not eager.checked and eager.sensitive
    screenshot(session, "07-create-pool-wizard")
    # with policy None there are no replicas to prepare
    select_from_combo(session, policy, "None")
    wait_until(lambda: policy.name == "none", "replica policy None")
    wait_until(lambda: not eager.sensitive, "the check box to be insensitive")
    select_from_combo(session, policy, "Copy", shot="08-pool-wizard-replica-policies")
    wait_until(lambda: policy.name == "copy", "replica policy Copy")
    click(eager)
    wait_until(lambda: eager.checked, "the check box to be checked")
    time.sleep(0.3)  # let the check mark draw
    shot = screenshot(session, "09-pool-wizard-replica")
    crop_to_window(shot, wizard, DOC_WIZARD_SCREENSHOT)
    # the XML tab shows the element the choices make
    find(wizard, role="page tab", name="XML").click()
    wait_until(lambda: [t for t in wizard.findChildren(
        lambda n: n.roleName == "text" and n.showing)
        if "policy=\"copy\" prepare=\"eager\"/>" in (t.text or "")],
        "<stormpool:replica policy=\"copy\" prepare=\"eager\"/> in the XML tab")
    find(wizard, role="page tab", name="Details").click()
    wait_until(lambda: policy.showing, "the Details tab")
    finish_pool_wizard(session, wizard, name)
    screenshot(session, "10-pool-created")
    xml = assert_stormpool_created(name, primary_dir, secondary_dir)
    assert "<stormpool:replica policy='copy' prepare='eager'/>" in xml, xml
    assert "xmlns:stormpool='urn:stormpool:pool:1.0'" in xml, xml


def test_pool_wizard_defaults_write_no_replica_element(session, wizard_pool):
    """The pool wizard shows the replica fields for stormpool pools only,
    and with the defaults (Automatic, not prepared) writes no replica
    element."""
    name, primary_dir, secondary_dir = wizard_pool
    wizard = open_pool_wizard(session, name)
    # the wizard opens on another type ('dir'): no replica fields
    ptype = find_labelled(wizard, "Type:", "combo box")
    assert ptype.name != "stormpool", ptype.name
    policy, eager = replica_fields(wizard)
    label = find(wizard, role="label", name="Replica Policy:")
    assert not (policy.showing or eager.showing or label.showing)
    fill_in_stormpool(session, wizard, primary_dir, secondary_dir)
    wait_until(lambda: policy.showing and eager.showing and label.showing,
               "the replica fields")
    # reset to the defaults, whatever the last use of the wizard left
    wait_until(lambda: policy.name == "auto", "replica policy Automatic (the default)")
    assert not eager.checked and eager.sensitive
    finish_pool_wizard(session, wizard, name)
    xml = assert_stormpool_created(name, primary_dir, secondary_dir)
    # (a running pool's status lists its replicas, <stormpool:replicas>)
    assert not re.search(r"<stormpool:replica[\s/>]", xml), xml


STATELESS = "spt-gui-stateless"


@pytest.fixture
def stateless_guest(session, gui_pool):
    """A shut-off guest spt-gui-stateless whose volume disk, the pool's
    instance pc01.qcow2, has <transient shareBacking='yes'/>; its details
    window closed and the guest undefined at the end of the test."""
    sp.remove_domain(STATELESS)
    xml = sp.firmware_guest_xml(STATELESS, POOL, INSTANCE,
                                disk_extra="<transient shareBacking='yes'/>", acpi=True)
    with sp.connection() as conn:
        conn.defineXML(xml)
    yield STATELESS
    window = showing_window(session, "%s on %s" % (STATELESS, CONN_LABEL), "frame")
    if window is not None:
        window.keyCombo("<Control>w")
    sp.remove_domain(STATELESS)


def open_domain_details(session, name):
    """The details of guest @name, as 'virt-manager --show-domain-editor'
    opens them: that second process hands the request to the running one."""
    session.spawn("virt-manager-show-domain", [
        "/usr/bin/python3", "-c", NO_DEFAULT_POOL,
        os.path.join(session.vm_tree, "virt-manager"), "--no-fork",
        "--connect", "qemu:///system", "--show-domain-editor", name])
    return find_window(session, "%s on %s" % (name, CONN_LABEL), "frame")


def test_details_show_and_edit_a_transient_disk(session, stateless_guest):
    """A transient volume disk shows as such in its details (Advanced
    options: Transient checked, "shared backing image"); unchecking it and
    applying removes <transient/> from the guest's XML, shareBacking too."""
    window = open_domain_details(session, stateless_guest)
    find(window, role="table cell", name="VirtIO Disk 1", showing=True).click()
    transient = find_labelled(window, "Transient:", "check box")
    wait_until(lambda: transient.checked, "the Transient check box to be checked")
    assert transient.name == "shared backing image", transient.name
    expander = find(window, role="toggle button", name="Advanced options", showing=True)
    if not transient.showing:
        expander.click()
    wait_until(lambda: transient.showing, "the advanced options")
    screenshot(session, "11-transient-disk-details")
    click(transient)
    wait_until(lambda: not transient.checked, "the check box to be unchecked")
    click(find(window, role="push button", name="config-apply", showing=True))
    wait_until(lambda: "<transient" not in virsh("dumpxml", stateless_guest),
               "<transient/> to leave the guest's XML")


def test_session_ends_without_a_trace(session):
    """Ending the session leaves nothing running: virt-manager, Xvfb and the
    D-Bus session are gone; the screenshots taken are kept. (It ends the module's session: the
    last test of the module.)"""
    procs = [proc for name, proc in session.procs]
    assert procs, "the session is not up"
    session.kill()
    assert all(proc.poll() is not None for proc in procs)
    for path in session.screenshots:
        assert os.path.getsize(path) > 0, path
    print("# screenshots: %s" % ", ".join(
        os.path.relpath(p, TOP) for p in session.screenshots))
