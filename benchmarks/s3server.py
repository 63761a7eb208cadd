"""``python -m benchmarks.s3server``: a real S3 API (moto's server) on 127.0.0.1 for the
benchmark's S3 case, in a process of its own so the measured ``mirror sync`` shares
nothing with it but the loopback interface.

Prints one JSON line, ``{"endpoint": "http://127.0.0.1:<port>"}``, once it listens;
stops when its stdin closes (the benchmark ends or dies) or on SIGTERM. moto accepts
any credentials; nothing here reaches a real cloud.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading


def main() -> int:
    """Serve until stdin closes or SIGTERM."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415  # the test extra

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    sys.stdout.write(json.dumps({"endpoint": f"http://{host}:{port}"}) + "\n")
    sys.stdout.flush()
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
