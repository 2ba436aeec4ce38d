"""A small TAP harness for the integration suites.

Steps run in order and share state; a failing step is reported and the
suite goes on, and the cleanups registered with Suite.cleanup always run,
so a failure never leaves pools, domains or files behind.
"""

import os
import shutil
import sys
import tempfile
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The private libvirt of the version under test, _build/prefix-<version>
# (tools/virt-env exec sets it).
PREFIX = os.environ["STORMPOOL_PREFIX"]
TEST_TMP = os.path.join(TOP, "_build", "test-tmp")


# The connection, lookups, the wait for a pool's background work and the
# virsh that does it live in the helper shared with the pytest suites and
# the benchmarks.
from stormpool_client import (CommandFailed, POOL_WORK_TIMEOUT, REFRESHING,  # noqa: F401
                              assert_pattern, daemon_alive, listdir, log_size, pool_target,
                              pool_xml, qemu_img_info, run, sha256, template_data_paths,
                              virsh, vol_names, wait_for, wait_pool_work)

STORAGED_LOG = os.path.join(PREFIX, "var", "log", "libvirt", "virtstoraged.log")


def virsh_fails(*args, expect):
    """Assert that virsh fails and that its error contains @expect."""
    rc, out, err = run(["virsh", "-q"] + list(args), check=False)
    if rc == 0:
        raise AssertionError("virsh %s succeeded, expected an error with %r\n%s" %
                             (" ".join(args), expect, out))
    if expect not in err:
        raise AssertionError("virsh %s: expected %r in the error, got:\n%s" %
                             (" ".join(args), expect, err))
    return err


def define_pool(name, primary, secondary, replica=None, extra=""):
    """Define a stormpool pool from XML (pool-define-as cannot set our
    namespace); @replica is the replica policy, or None for the default."""
    xml = pool_xml(name, primary, secondary, replica, extra)
    with tempfile.NamedTemporaryFile("w", suffix=".xml", dir=TEST_TMP, delete=False) as f:
        f.write(xml)
    try:
        virsh("pool-define", f.name)
    finally:
        os.unlink(f.name)


def replica_dir(secondary, template_name):
    return os.path.join(secondary, ".stormpool-replicas", template_name)


def backing_template(overlay, secondary):
    """The template an instance backs onto, through a replica or not:
    (template file name, backing path)."""
    backing = qemu_img_info(overlay)["backing-filename"]
    parent = os.path.dirname(backing)
    if os.path.dirname(parent) == os.path.join(secondary, ".stormpool-replicas"):
        return os.path.basename(parent), backing
    return os.path.basename(backing), backing


def make_tmpdir(prefix):
    """A directory on a disk-backed file system (O_DIRECT works there)."""
    os.makedirs(TEST_TMP, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=TEST_TMP)


class Suite:
    def __init__(self, name):
        self.name = name
        self.count = 0
        self.failed = 0
        self.cleanups = []
        print("# suite %s" % name)

    def step(self, description):
        """Decorator: run the function now as one TAP test."""
        def wrap(func):
            self.count += 1
            try:
                func()
            except Exception:
                self.failed += 1
                print("not ok %d - %s" % (self.count, description))
                for line in traceback.format_exc().splitlines():
                    print("#   " + line)
            else:
                print("ok %d - %s" % (self.count, description))
            sys.stdout.flush()
            return func
        return wrap

    def skip(self, description, reason):
        self.count += 1
        print("ok %d - %s # SKIP %s" % (self.count, description, reason))

    def cleanup(self, func, *args):
        self.cleanups.append((func, args))

    def cleanup_pool(self, name):
        def undo():
            run(["virsh", "-q", "pool-destroy", name], check=False)
            run(["virsh", "-q", "pool-undefine", name], check=False)
        self.cleanups.append((undo, ()))

    def cleanup_dir(self, path):
        self.cleanups.append((shutil.rmtree, (path, True)))

    def finish(self):
        for func, args in reversed(self.cleanups):
            try:
                func(*args)
            except Exception as exc:
                print("# cleanup %s failed: %s" % (getattr(func, "__name__", func), exc))
        print("1..%d" % self.count)
        sys.exit(1 if self.failed else 0)


def start_watchdog(suite, seconds, before_exit=None):
    """Bound a whole suite in time: if it still runs after @seconds (a call
    into a hung daemon never returns, say), report a failed test, call
    @before_exit (to kill the suite's child processes) and exit at once,
    without the cleanups, which could hang the same way. Returns the timer;
    cancel() it when the suite is done."""
    import threading
    main = threading.main_thread().ident

    def expire():
        suite.count += 1
        print("not ok %d - the suite finished within %d s # timed out" %
              (suite.count, seconds))
        frame = sys._current_frames().get(main)
        for line in traceback.format_stack(frame) if frame else []:
            print("#   " + line.rstrip().replace("\n", "\n#   "))
        if before_exit:
            try:
                before_exit()
            except Exception as exc:
                print("# watchdog: %s" % exc)
        print("1..%d" % suite.count)
        sys.stdout.flush()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer
