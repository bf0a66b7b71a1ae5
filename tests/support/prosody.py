"""A throwaway Prosody (Debian's `prosody`) on loopback for the XMPP tests: its own config, data
and TLS certificate (from a test CA) in a temp dir, a free port, accounts made with `prosodyctl`.

Where Prosody is not installed the tests skip with the reason, except under CI (`CI` set), where
they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import free_port
from tests.support.certificates import issue

DOMAIN = "localhost"
START_TIMEOUT_S = 20.0


def require_prosody() -> tuple[str, str]:
    """The paths of `prosody` and `prosodyctl`, or a skip (a failure under CI) saying what to do."""
    prosody, prosodyctl = shutil.which("prosody"), shutil.which("prosodyctl")
    if prosody and prosodyctl:
        return prosody, prosodyctl
    message = (
        "Prosody is not installed, so the XMPP tests cannot run; install Debian's `prosody` "
        "(`scripts/install dev` does it as root, or `sudo apt-get install prosody`)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Prosody:
    directory: Path
    port: int
    tls: bool  # STARTTLS offered and required; without it, plaintext (loopback only)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "prosody.cfg.lua"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def log(self) -> Path:
        return self.directory / "prosody.log"

    def add_account(self, user: str, password: str) -> str:
        """Create `user@localhost` with `prosodyctl`; returns the JID."""
        _, prosodyctl = require_prosody()
        command = [prosodyctl, "--config", str(self.config), "register", user, DOMAIN, password]
        subprocess.run(command, check=True, capture_output=True, timeout=30)
        return f"{user}@{DOMAIN}"

    def start(self) -> None:
        prosody, _ = require_prosody()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [prosody, "--config", str(self.config), "-F"], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Prosody did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (Prosody closes its streams, as on a real restart), SIGKILL after 10 s."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@contextmanager
def running_prosody(directory: Path, *, tls: bool = True) -> Iterator[Prosody]:
    """Prosody serving `localhost` on a free loopback port, until the block ends."""
    require_prosody()
    server = Prosody(directory, free_port(), tls)
    (directory / "data").mkdir(parents=True)
    if tls:
        _write_certificates(directory)
    server.config.write_text(_config(server))
    try:
        yield server
    finally:
        server.stop()


def _config(server: Prosody) -> str:
    d = server.directory
    names = ["roster", "saslauth", "disco", "ping", "offline", "posix"]
    modules = ", ".join(f'"{name}"' for name in [*names, *(["tls"] if server.tls else [])])
    lines = [
        f"pidfile = {_lua(d / 'prosody.pid')}",
        f"data_path = {_lua(d / 'data')}",
        f"certificates = {_lua(d / 'certs')}",
        "run_as_root = true  -- containers run tests as root; Prosody refuses otherwise",
        f"log = {{ {{ levels = {{ min = 'info' }}, to = 'file', filename = {_lua(server.log)} }} }}",
        'interfaces = { "127.0.0.1" }',
        f"c2s_ports = {{ {server.port} }}",
        "c2s_direct_tls_ports = { }",
        f"modules_enabled = {{ {modules} }}",
        'modules_disabled = { "s2s" }',
        'authentication = "internal_hashed"',
        'storage = "internal"',
        f"c2s_require_encryption = {'true' if server.tls else 'false'}",
        f"allow_unencrypted_plain_auth = {'false' if server.tls else 'true'}",
        f'VirtualHost "{DOMAIN}"',
    ]
    return "\n".join(lines) + "\n"


def _lua(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _write_certificates(directory: Path) -> None:
    """A test CA (`ca.crt`, what the clients trust) and the server's certificate it signed."""
    issued = issue(DOMAIN, x509.DNSName(DOMAIN))
    certs = directory / "certs"
    certs.mkdir()
    (directory / "ca.crt").write_bytes(issued.ca)
    (certs / f"{DOMAIN}.crt").write_bytes(issued.certificate)
    (certs / f"{DOMAIN}.key").write_bytes(issued.key)
