"""A real nginx in the foreground for the end-to-end tests: a minimal nginx.conf
around one of the repository's server blocks (``nginx/*.conf``), on a loopback port."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.clients import free_port, stop, wait_for_port

REPO = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass(frozen=True)
class RunningNginx:
    """nginx's base URL and its access log so far."""

    url: str
    access_log: Callable[[], str]


def server_block(name: str, replacements: dict[str, str]) -> str:
    """``nginx/<name>``, each whole line of ``replacements`` (its key, without the
    indentation) replaced; every one must be found exactly once."""
    text = (REPO / "nginx" / name).read_text()
    for line, new in replacements.items():
        text, count = re.subn(rf"(?m)^(\s*){re.escape(line)}$", rf"\g<1>{new}", text)
        assert count == 1, f"nginx/{name} no longer has the line {line!r}"
    return text


@contextmanager
def running_nginx(block: str, prefix: Path) -> Iterator[RunningNginx]:
    """nginx serving ``block`` (a server block whose ``listen`` is ``{port}``) with
    its files under ``prefix``; stopped with SIGQUIT, with no ``[emerg]`` logged."""
    assert NGINX is not None
    port = free_port()
    prefix.mkdir()
    (prefix / "server.conf").write_text(block.replace("{port}", str(port)))
    access_log = prefix / "access.log"
    error_log = prefix / "error.log"
    # As root, workers would drop to `nobody`, who cannot read pytest's 0700 temp dirs;
    # as anyone else nginx ignores `user` with a warning.
    (prefix / "nginx.conf").write_text(
        f"""
daemon off;
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {error_log} warn;
events {{ worker_connections 64; }}
http {{
    log_format mirror '$remote_addr "$request" $status $body_bytes_sent '
                      '"$sent_http_content_type" "$http_user_agent"';
    access_log {access_log} mirror;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/server.conf;
}}
"""
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc, error_log)
        yield RunningNginx(f"http://127.0.0.1:{port}", access_log.read_text)
    finally:
        stop(proc, signal.SIGQUIT)
    assert "[emerg]" not in error_log.read_text()
