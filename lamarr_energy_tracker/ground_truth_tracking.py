"""LET 0.1.x's ground-truth module, kept working on LET's new Tasmota backend.

Server:  ``python -m lamarr_energy_tracker.ground_truth_tracking --config CONFIG [--host H] [--port P]``
Client:  ``python -m lamarr_energy_tracker.ground_truth_tracking --host SERVER-IP --port PORT``
         (stores the server in ``$LET_HOME/GT_REMOTE_CONFIG``; then ``GroundTruthTracker()``)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from let_backends.tasmota.client import GroundTruthError, GroundTruthTracker
from let_backends.tasmota.config import remote_config_file
from let_backends.tasmota.protocol import TASMOTA_TIME as GT_FMT

__all__ = ["GroundTruthTracker", "GroundTruthTrackingServer", "GroundTruthError", "GT_FMT", "main"]


def __getattr__(name: str) -> Any:
    if name == "REMOTE_CONFIG_FILE":  # follows $LET_HOME, which 0.1.x's constant could not
        return str(remote_config_file())
    raise AttributeError(name)


class GroundTruthTrackingServer:
    """The ground-truth server. As in LET 0.1.x the constructor serves until interrupted;
    ``block=False`` starts it in the background instead (then call ``stop()``)."""

    def __init__(self, config_file: str | os.PathLike[str], host: str = "0.0.0.0", port: int = 8000, *,
                 token: str | None = None, poll_interval: float = 1.0, socket_timeout: float = 2.0,
                 block: bool = True) -> None:
        from let_backends.tasmota.config import load_server_config
        from let_backends.tasmota.server import RunningServer

        self.config = load_server_config(config_file)
        self.host, self.port = host, port
        self._server = RunningServer(self.config, host=host, port=port, token=token,
                                     poll_interval=poll_interval, socket_timeout=socket_timeout)
        print(f"Serving on {host}:{port}", flush=True)
        if block:
            self._server.serve()
        else:
            self._server.start()

    @property
    def url(self) -> str:
        return self._server.url

    def stop(self) -> None:
        self._server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lamarr_energy_tracker.ground_truth_tracking",
        description="Either start the server with --config, or store the remote server's HOST and PORT "
                    "in $LET_HOME/GT_REMOTE_CONFIG for ground-truth tracking on this client.")
    parser.add_argument("--config", default=None, help="JSON file mapping host names to smart socket IPs")
    parser.add_argument("--host", default="0.0.0.0", help="server: interface to listen on; client: server IP")
    parser.add_argument("--port", default=8000, type=int, help="server port")
    parser.add_argument("--token", default=None, help="server: bearer token (default: $LET_GT_TOKEN)")
    parser.add_argument("--poll-interval", default=1.0, type=float, help="server: seconds between socket reads")
    args = parser.parse_args(argv)
    from let_core.errors import LetError

    try:
        if args.config:
            server = GroundTruthTrackingServer(args.config, args.host, args.port, token=args.token,
                                               poll_interval=args.poll_interval)
            del server
            return 0
        from let_backends.tasmota.config import write_remote_config

        if args.host in ("0.0.0.0", "::"):
            parser.error("--host must be the server's IP or name (0.0.0.0 is only for listening)")
        path = write_remote_config(args.host, args.port)
    except LetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Stored remote tracking HOST {args.host} and PORT {args.port} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
