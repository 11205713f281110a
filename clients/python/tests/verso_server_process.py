"""Run a real verso-server process for tests: free port, temporary data folder, clean stop.

The binary is $VERSO_SERVER_BINARY, or ``<repo>/.build/debug/verso-server`` (what
``swift build`` / ``swift test`` produce).
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[3]
_URL_PATTERN = re.compile(r"verso\.url=(wss?://\S+)")


def server_binary() -> Path:
    """The verso-server binary to test, failing clearly when it is not there."""
    configured = os.environ.get("VERSO_SERVER_BINARY")
    binary = Path(configured) if configured else REPO_ROOT / ".build" / "debug" / "verso-server"
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise RuntimeError(
            f"verso-server binary not found at {binary}: run `swift build` in {REPO_ROOT} "
            "or set VERSO_SERVER_BINARY"
        )
    return binary


class VersoServer:
    """One verso-server process. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        *extra_args: str,
        port: int = 0,
        data_dir: Path | None = None,
        startup_timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` trusts the certificate of a server started with ``--tls-cert-file``
        (its health check then goes over https)."""
        self.binary = server_binary()
        self.extra_args = extra_args
        self.port = port
        self._data_holder: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._data_holder = tempfile.TemporaryDirectory(prefix="verso-test-data-")
            data_dir = Path(self._data_holder.name)
        self.data_dir = data_dir
        self.startup_timeout = startup_timeout
        self.ssl_context = ssl_context
        self._log_holder = tempfile.TemporaryDirectory(prefix="verso-test-log-")
        self.log_path = Path(self._log_holder.name) / "stderr.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.ws_url = ""
        self.http_url = ""
        self.exit_code: int | None = None

    # ---- lifecycle

    def start(self) -> VersoServer:
        """Start the process (on self.port; 0 picks a free one) and wait until it listens."""
        if self.process is not None:
            raise RuntimeError("already started")
        self.exit_code = None
        offset = len(self.log())  # a restart appends to the same log: look only at the new part
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port),
                 "--data", str(self.data_dir), *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            match = _URL_PATTERN.search(self.log()[offset:])
            if match:
                break
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise RuntimeError(f"verso-server exited with {code} before listening:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"verso-server did not report its URL within {self.startup_timeout}s:\n{self.log()}")
            time.sleep(0.02)
        self.ws_url = match.group(1)
        scheme, rest = self.ws_url.split("://", 1)
        host_port = rest.split("/", 1)[0]
        self.port = int(host_port.rsplit(":", 1)[1])
        self.http_url = f"{'https' if scheme == 'wss' else 'http'}://{host_port}"
        self._wait_healthy(deadline)
        return self

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=2, context=self.ssl_context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.http_url}/healthz never answered 200:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful shutdown), then SIGKILL if it does not exit in time. Returns the exit code."""
        process = self.process
        if process is None:
            return self.exit_code if self.exit_code is not None else 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.exit_code = process.returncode
        self.process = None
        return self.exit_code

    def close(self) -> None:
        """Stop the process and remove the temporary folders."""
        self.stop()
        if self._data_holder is not None:
            self._data_holder.cleanup()
        self._log_holder.cleanup()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> VersoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key (mode 600) for localhost and 127.0.0.1 in `folder`, made with
    openssl (.ci/run installs it), for servers started with --tls-cert-file/--tls-key-file."""
    certificate, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True,
    )
    key.chmod(0o600)
    return certificate, key
