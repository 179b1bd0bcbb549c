"""Broker launchers shared by test/integration and test/netns.

Two targets:
  * mqnode   -- the broker under test: $MQNODE_BIN --config FILE --data-dir DIR --log-level info
  * rabbitmq -- a private RabbitMQ 3.10 node (own node name, ports, epmd, mnesia
                dir, HOME/cookie, no plugins), used as the reference behaviour.

Select with AMQP_TARGET=mqnode (default) or AMQP_TARGET=rabbitmq.
"""

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

RABBIT_SBIN = os.environ.get("RABBITMQ_SBIN", "/usr/lib/rabbitmq/bin")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"

DEFAULT_USERS = [
    {"name": "guest", "password": "guest", "tags": ["administrator"]},
    {"name": "alice", "password": "alicepw", "tags": []},
]
DEFAULT_VHOSTS = ["/", "other"]
DEFAULT_PERMISSIONS = [
    {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "alice", "vhost": "/", "configure": "^alice\\.",
     "write": "^(alice\\.|amq\\.default$)", "read": "^alice\\."},
]

# Broker keys the fixture always writes (mqnode defaults are the same values;
# they are spelled out so the tests do not depend on defaults).
DEFAULT_BROKER = {
    "users": DEFAULT_USERS,
    "vhosts": DEFAULT_VHOSTS,
    "permissions": DEFAULT_PERMISSIONS,
    "loopback_users": ["guest"],
    "heartbeat_s": 60,
    "frame_max": 131072,
    "channel_max": 2047,
    "max_message_size": 134217728,
}

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                     "ThreadSanitizer", "ERROR: MemorySanitizer")


def target():
    t = os.environ.get("AMQP_TARGET", "mqnode").strip().lower()
    if t not in ("mqnode", "rabbitmq"):
        raise RuntimeError("AMQP_TARGET must be 'mqnode' or 'rabbitmq', not %r" % t)
    return t


def free_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_tail(path, limit=20000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _read_all(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


class BrokerError(Exception):
    pass


def _die_with_parent():
    """preexec_fn: new session + SIGTERM when the test runner dies (no orphans)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


class Broker:
    """Common interface of both targets."""

    target = None

    def __init__(self, workdir, overrides=None, host="127.0.0.1", port=None):
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host if host != "0.0.0.0" else "127.0.0.1")
        self.config = copy.deepcopy(DEFAULT_BROKER)
        for k, v in (overrides or {}).items():
            self.config[k] = v
        self.proc = None
        self.stderr_path = os.path.join(workdir, "broker.stderr")
        self.stdout_path = os.path.join(workdir, "broker.stdout")
        self.returncode = None
        self.stopped_by_us = False

    # --- properties used by tests --------------------------------------
    @property
    def heartbeat(self):
        return self.config.get("heartbeat_s", 60)

    @property
    def frame_max(self):
        return self.config.get("frame_max", 131072)

    @property
    def channel_max(self):
        return self.config.get("channel_max", 2047)

    @property
    def max_message_size(self):
        return self.config.get("max_message_size", 134217728)

    def stderr_text(self):
        return _read_all(self.stderr_path)

    # --- health ----------------------------------------------------------
    _reported_upto = 0
    _reported_exit = False

    def problems(self, only_new=False):
        """A list of strings describing a crash / sanitizer report; [] if healthy.

        only_new=True reports each sanitizer report / unexpected exit once (used by the
        per-test health check so that one crash fails one test, not all later ones)."""
        out = []
        err = self.stderr_text()
        start = self._reported_upto if only_new else 0
        for m in (SANITIZER_MARKERS if self.target == "mqnode" else ()):
            if m in err[start:]:
                out.append("sanitizer report (%r) in broker stderr" % m)
                break
        if only_new:
            self._reported_upto = len(err)
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is not None and not (only_new and self._reported_exit):
                if not self.stopped_by_us:
                    out.append("broker exited unexpectedly with status %r" % rc)
                elif rc != 0 and self.target == "mqnode":
                    out.append("broker exit status after SIGTERM was %r (expected 0)" % rc)
                if only_new and out:
                    self._reported_exit = True
        return out

    def describe_failure(self):
        return "broker (%s) stderr tail:\n%s" % (self.target, _read_tail(self.stderr_path, 6000))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _wait_port(self, timeout, host=None, port=None):
        host, port = host or self.connect_host, port or self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError("broker exited during startup with status %r\n%s"
                                  % (self.proc.returncode, self.describe_failure()))
            if port_open(host, port):
                return
            time.sleep(0.1)
        raise BrokerError("broker did not accept connections on %s:%d within %.0fs\n%s"
                          % (host, port, timeout, self.describe_failure()))

    @property
    def connect_host(self):
        return "127.0.0.1" if self.host == "0.0.0.0" else self.host

    def terminate(self, timeout=20.0):
        """SIGTERM, then SIGKILL after timeout.  Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.stopped_by_us = True
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait(10)
        self._kill_group()
        self.returncode = self.proc.returncode
        return self.returncode

    def _kill_group(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self):
        rc = self.terminate()
        self.cleanup()
        return rc

    def cleanup(self):
        pass


class MqnodeBroker(Broker):
    target = "mqnode"

    def __init__(self, workdir, overrides=None, host="127.0.0.1", port=None, binary=None):
        super().__init__(workdir, overrides, host, port)
        self.binary = binary or os.environ.get("MQNODE_BIN")
        if not self.binary:
            raise BrokerError("MQNODE_BIN is not set (or use AMQP_TARGET=rabbitmq)")
        self.binary = os.path.abspath(self.binary)
        if not os.access(self.binary, os.X_OK):
            raise BrokerError("MQNODE_BIN=%s is not an executable file" % self.binary)
        self.config_path = os.path.join(workdir, "mqnode.json")
        self.data_dir = os.path.join(workdir, "data")
        # Top-level config sections besides "broker" (e.g. {"management": {...}}).
        self.sections = {}

    def broker_section(self):
        b = copy.deepcopy(self.config)
        b.setdefault("listeners", [{"bind": "%s:%d" % (self.host, self.port)}])  # unless overridden
        return b

    def start(self, timeout=15.0):
        os.makedirs(self.data_dir, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(dict(self.sections, broker=self.broker_section()), f, indent=2)
        env = dict(os.environ)
        # Make sanitizer reports deterministic and visible on stderr.
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen(
            [self.binary, "--config", self.config_path, "--data-dir", self.data_dir,
             "--log-level", "info"],
            stdin=subprocess.DEVNULL,
            stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
            cwd=self.workdir, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self._wait_port(timeout)
            bind = self.sections.get("management", {}).get("bind")
            if bind:
                # The management listener binds after the broker's: wait for it too.
                host, port = bind.rsplit(":", 1)
                host = host.strip("[]")
                self._wait_port(timeout, "::1" if host == "::" else "127.0.0.1" if host == "0.0.0.0" else host, int(port))
        except Exception:
            self.terminate(5)
            raise
        return self

    def ctl(self, *args, timeout=60):
        """`mqnode ctl` against this node (as RabbitBroker.ctl runs rabbitmqctl)."""
        return subprocess.run([self.binary, "ctl", "--data-dir", self.data_dir] + list(args),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)


class RabbitBroker(Broker):
    target = "rabbitmq"

    # overrides -> rabbitmq.conf keys
    CONF_KEYS = {"heartbeat_s": "heartbeat", "frame_max": "frame_max",
                 "channel_max": "channel_max", "max_message_size": "max_message_size"}

    def __init__(self, workdir, overrides=None, host="127.0.0.1", port=None):
        super().__init__(workdir, overrides, host, port)
        self.nodename = "mqtest-%d-%s@localhost" % (os.getpid(), os.path.basename(workdir).replace("_", "-"))
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.epmd = None
        self.home = os.path.join(workdir, "home")
        self.env = None

    def conf_text(self):
        lines = []
        for k, ck in self.CONF_KEYS.items():
            if k in self.config:
                lines.append("%s = %s" % (ck, self.config[k]))
        lb = self.config.get("loopback_users", ["guest"])
        if not lb:
            lines.append("loopback_users = none")
        else:
            for u in lb:
                lines.append("loopback_users.%s = true" % u)
        lines.append("load_definitions = %s" % os.path.join(self.workdir, "definitions.json"))
        lines.append("log.console = true")
        lines.append("log.console.level = warning")
        lines.append("log.file.level = info")
        return "\n".join(lines) + "\n"

    def definitions(self):
        users = self.config.get("users")
        perms = self.config.get("permissions")
        vhosts = self.config.get("vhosts", ["/"])
        if users is None:
            users = [{"name": "guest", "password": "guest", "tags": ["administrator"]}]
            perms = [{"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}]
        return {
            "users": [{"name": u["name"], "password": u["password"],
                       "tags": ",".join(u.get("tags", []))} for u in users],
            "vhosts": [{"name": v} for v in vhosts],
            "permissions": perms or [],
        }

    def start(self, timeout=60.0):
        os.makedirs(self.home, exist_ok=True)
        for d in ("mnesia", "log"):
            os.makedirs(os.path.join(self.workdir, d), exist_ok=True)
        with open(os.path.join(self.workdir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        with open(os.path.join(self.workdir, "rabbitmq-env.conf"), "w") as f:
            f.write("")
        with open(os.path.join(self.workdir, "rabbitmq.conf"), "w") as f:
            f.write(self.conf_text())
        with open(os.path.join(self.workdir, "definitions.json"), "w") as f:
            json.dump(self.definitions(), f)
        env = dict(os.environ)
        env.update({
            "HOME": self.home,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": os.path.join(self.workdir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.workdir, "log"),
            "RABBITMQ_CONFIG_FILE": os.path.join(self.workdir, "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.workdir, "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.workdir, "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": os.path.join(self.workdir, "rabbit.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(self.workdir, "advanced.config"),
            "RABBITMQ_FEATURE_FLAGS_FILE": os.path.join(self.workdir, "feature_flags"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": os.path.join(self.workdir, "plugins-expand"),
        })
        self.env = env
        # Our own epmd in the foreground (so we can reap it) on a private port.
        self.epmd = subprocess.Popen([EPMD, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        self.proc = subprocess.Popen(
            [os.path.join(RABBIT_SBIN, "rabbitmq-server")],
            stdin=subprocess.DEVNULL,
            stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
            cwd=self.workdir, env=env, start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self._await_startup(timeout)
            self._wait_port(10)
        except Exception:
            self.terminate(10)
            self.cleanup()
            raise
        return self

    def ctl(self, *args, timeout=60):
        return subprocess.run([os.path.join(RABBIT_SBIN, "rabbitmqctl"), "-n", self.nodename] + list(args),
                              env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)

    def _await_startup(self, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError("rabbitmq-server exited during startup (%r)\n%s"
                                  % (self.proc.returncode, self.describe_failure()))
            try:
                r = self.ctl("-q", "await_startup", "-t", str(int(max(1, deadline - time.monotonic()))),
                             timeout=max(5, deadline - time.monotonic() + 5))
            except subprocess.TimeoutExpired:
                break
            if r.returncode == 0:
                return
            last = r.stdout + r.stderr
            time.sleep(0.5)
        raise BrokerError("RabbitMQ node %s did not start within %.0fs: %s\n%s"
                          % (self.nodename, timeout, last, self.describe_failure()))

    def describe_failure(self):
        log = os.path.join(self.workdir, "log", self.nodename + ".log")
        return "rabbitmq stdout/stderr:\n%s\n%s\nlog tail:\n%s" % (
            _read_tail(self.stdout_path, 3000), _read_tail(self.stderr_path, 3000), _read_tail(log, 4000))

    def cleanup(self):
        if self.epmd is not None:
            if self.epmd.poll() is None:
                try:
                    os.killpg(self.epmd.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.epmd.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.epmd.pid, signal.SIGKILL)
                    self.epmd.wait(5)


def make_broker(workdir, overrides=None, host="127.0.0.1", port=None):
    """Create (not start) a broker of the selected target."""
    if target() == "rabbitmq":
        return RabbitBroker(workdir, overrides, host, port)
    return MqnodeBroker(workdir, overrides, host, port)


def start_broker(overrides=None, host="127.0.0.1", port=None, prefix="mqtest-", management=False):
    """management=True (mqnode): its management API on 127.0.0.1 and a free TCP port too,
    b.http_port; management="[::]": on that address."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    try:
        b = make_broker(workdir, overrides, host, port)
        if management:
            b.http_port = free_port()
            b.sections["management"] = {"bind": "%s:%d" % ("127.0.0.1" if management is True else management,
                                                           b.http_port)}
        b.start()
    except Exception:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return b
