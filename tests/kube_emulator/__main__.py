"""Run the emulator standalone: `PYTHONPATH=tests python -m kube_emulator --port 0
--kubeconfig /tmp/emulator.kubeconfig`. Prints the URL, serves until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .server import EmulatorServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kube_emulator",
                                     description="Kubernetes API emulator for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the emulator here")
    parser.add_argument("--context", default="emulator")
    parser.add_argument("--token", default="emulator-token",
                        help="bearer token clients must send ('' disables the check)")
    parser.add_argument("--no-controllers", action="store_true",
                        help="do not simulate controller status updates")
    parser.add_argument("--controller-delay", type=float, default=0.0)
    args = parser.parse_args(argv)

    server = EmulatorServer(args.host, args.port, token=args.token or None,
                            controllers=not args.no_controllers,
                            controller_delay=args.controller_delay).start()
    if args.kubeconfig:
        server.write_kubeconfig(args.kubeconfig, context=args.context)
    sys.stdout.write(server.url + "\n")
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
