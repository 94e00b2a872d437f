"""LET 0.1.x's ground-truth module, kept working on LET's new Tasmota backend.

Server:  ``python -m lamarr_energy_tracker.ground_truth_tracking --config CONFIG [--host H] [--port P]``
Client:  ``python -m lamarr_energy_tracker.ground_truth_tracking --host SERVER-IP --port PORT``
         (stores the server in ``$LET_HOME/GT_REMOTE_CONFIG``; then ``GroundTruthTracker()``)
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from let_backends.tasmota.client import GroundTruthError, GroundTruthTracker
from let_backends.tasmota.config import remote_config_file
from let_groundtruth.protocol import TASMOTA_TIME as GT_FMT

__all__ = ["GroundTruthTracker", "GroundTruthTrackingServer", "GroundTruthError", "GT_FMT", "main",
           "send_tasmota_query", "tasmota_start", "tasmota_stop"]

_RESETS = ("tasmota_start() resets the socket's energy counters (EnergyTotal 0): every other user of "
           "that socket loses their figures. Use sessions instead: GroundTruthTracker, or "
           "EnergyTracker(backends=['tasmota']) against `lett gt serve`.")


def send_tasmota_query(ip: str, cmd: str) -> dict[str, Any] | None:
    """LET 0.1.x's low-level call: ``http://IP/cm?cmnd=CMD`` (CMD URL-encoded, e.g. ``Status%208``).

    For ``Status 8`` it returns 0.1.x's dict (``energy_consumed`` = the socket's Total in kWh,
    ``start_time`` = TotalStartTime, ``timestamp``, ``duration`` between them in s); for other
    commands None. Errors are printed and give None, as in 0.1.x. Deprecated: the ground-truth
    server's sessions never touch the socket's counters.
    """
    import requests

    warnings.warn("send_tasmota_query() talks to a socket directly; use the ground-truth server's "
                  "sessions (GroundTruthTracker) instead", DeprecationWarning, stacklevel=2)
    url = f"http://{ip}/cm?cmnd={quote(unquote(cmd), safe='')}"
    print(f"[GroundTruthTrackingServer] {url}")
    try:
        # requests.get, as 0.1.x called it: its code and tests patch that name
        response = requests.get(url, timeout=5)
        if unquote(cmd).strip().lower() != "status 8":
            return None
        response.raise_for_status()
        data = response.json()
        results: dict[str, Any] = {
            "energy_consumed": data["StatusSNS"]["ENERGY"]["Total"],  # kWh
            "start_time": data["StatusSNS"]["ENERGY"]["TotalStartTime"],
            "timestamp": data["StatusSNS"]["Time"],
        }
        results["duration"] = (datetime.strptime(results["timestamp"], GT_FMT)
                               - datetime.strptime(results["start_time"], GT_FMT)).total_seconds()
        return results
    except Exception as exc:  # 0.1.x's contract: print and answer None
        print(f"[{ip} {cmd}] Error reading power: {exc}")
        return None


def tasmota_start(ip: str) -> dict[str, Any] | None:
    """LET 0.1.x's start: read Status 8, then RESET the socket's counters (Yesterday, Today,
    Total to 0) and answer the reading from before the reset with the new timestamp.

    Deprecated (``DeprecationWarning``): the reset destroys other users' figures; use sessions."""
    warnings.warn(_RESETS, DeprecationWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        send_tasmota_query(ip, "EnergyRes%205")  # five decimals for energy report
        results = send_tasmota_query(ip, "Status%208")
        send_tasmota_query(ip, "EnergyYesterday%200")
        send_tasmota_query(ip, "EnergyToday%200")
        send_tasmota_query(ip, "EnergyTotal%200")
        after = send_tasmota_query(ip, "Status%208")
    if results is not None and after is not None:
        results["timestamp"] = after["timestamp"]
    return results


def tasmota_stop(ip: str) -> dict[str, Any] | None:
    """LET 0.1.x's stop: the socket's Status 8 (Total since the last reset). Deprecated."""
    warnings.warn("tasmota_stop() reads a socket whose counter tasmota_start() reset; use sessions "
                  "(GroundTruthTracker) instead", DeprecationWarning, stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        send_tasmota_query(ip, "EnergyRes%205")
        return send_tasmota_query(ip, "Status%208")


def __getattr__(name: str) -> Any:
    if name == "REMOTE_CONFIG_FILE":  # follows $LET_HOME, which 0.1.x's constant could not
        return str(remote_config_file())
    raise AttributeError(name)


class GroundTruthTrackingServer:
    """The ground-truth server. As in LET 0.1.x the constructor serves until interrupted;
    ``block=False`` starts it in the background instead (then call ``stop()``)."""

    def __init__(self, config_file: str | os.PathLike[str], host: str = "0.0.0.0", port: int = 8000, *,
                 token: str | None = None, poll_interval: float = 1.0, socket_timeout: float = 2.0,
                 block: bool = True, state_dir: str | os.PathLike[str] | None = None) -> None:
        from let_groundtruth.config import default_state_dir, load_server_config
        from let_groundtruth.server import RunningServer

        self.config = load_server_config(config_file)
        self.host, self.port = host, port
        self._server = RunningServer(self.config, host=host, port=port, token=token,
                                     poll_interval=poll_interval, socket_timeout=socket_timeout,
                                     state_dir=str(state_dir or default_state_dir()))
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
    parser.add_argument("--state-dir", default=None, help="server: where sessions persist ($LET_HOME/gt-server)")
    args = parser.parse_args(argv)
    from let_core.errors import LetError

    try:
        if args.config:
            server = GroundTruthTrackingServer(args.config, args.host, args.port, token=args.token,
                                               poll_interval=args.poll_interval, state_dir=args.state_dir)
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
