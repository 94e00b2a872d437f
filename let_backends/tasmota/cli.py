"""``let gt ...``: run the ground-truth server, point clients at it, emulate and calibrate sockets."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from let_backends.tasmota.config import (DEFAULT_SERVER_PORT, load_server_config, parse_server_config,
                                         server_location, write_remote_config)
from let_core.errors import LetError


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


@click.group(name="gt")
def gt() -> None:
    """Ground-truth energy at the wall socket (Tasmota smart sockets)."""


@gt.command()
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False),
              help="JSON mapping host names to socket addresses (\"ip[:port]\" or {address,user,password}).")
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", default=DEFAULT_SERVER_PORT, show_default=True, type=int)
@click.option("--token", envvar="LET_GT_TOKEN", default="", help="Bearer token clients must send [env LET_GT_TOKEN].")
@click.option("--poll-interval", default=1.0, show_default=True, type=float, help="Seconds between socket reads.")
@click.option("--socket-timeout", default=2.0, show_default=True, type=float, help="Seconds to wait for a socket.")
def serve(config_file: str, host: str, port: int, token: str, poll_interval: float, socket_timeout: float) -> None:
    """Run the ground-truth server in front of the configured sockets."""
    try:
        sockets = load_server_config(config_file)
        from let_backends.tasmota.server import RunningServer

        server = RunningServer(sockets, host=host, port=port, token=token, poll_interval=poll_interval,
                               socket_timeout=socket_timeout)
    except (LetError, ValueError, ImportError) as exc:
        _fail(exc)
    click.echo(f"LET ground-truth server on http://{host}:{port} (docs at /docs) metering "
               f"{', '.join(sockets)}{'; token required' if token else ''}")
    server.serve()


@gt.command()
@click.option("--host", default=None, help="The ground-truth server's name or IP.")
@click.option("--port", default=DEFAULT_SERVER_PORT, show_default=True, type=int)
def config(host: str | None, port: int) -> None:
    """Store the server's address in $LET_HOME/GT_REMOTE_CONFIG (no --host: show the current one)."""
    try:
        if host is None:
            location = server_location()
            click.echo(f"{location.host}:{location.port} (from {location.source})" if location
                       else "not configured; run `let gt config --host SERVER-IP --port PORT`")
            return
        path = write_remote_config(host, port)
    except LetError as exc:
        _fail(exc)
    click.echo(f"Stored ground-truth server {host}:{port} in {path}")


@gt.command()
@click.argument("host")
@click.option("--volts", type=float, default=None, help="True mains voltage (VoltageSet).")
@click.option("--watts", type=float, default=None, help="True power of the plugged load (PowerSet).")
@click.option("--amps", type=float, default=None, help="True current in A (CurrentSet, sent in mA).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Server config to find HOST's socket in.")
@click.option("--address", default=None, help="The socket's ip[:port], instead of --config.")
@click.option("--user", default="", help="Socket web user (default admin when a password is given).")
@click.option("--password", default="", help="Socket web password.")
def calibrate(host: str, volts: float | None, watts: float | None, amps: float | None,
              config_file: str | None, address: str | None, user: str, password: str) -> None:
    """Calibrate HOST's socket against a known constant load (e.g. an 11 W bulb):
    SaveData 1, VoltageSet, PowerSet, then Status 8 to check."""
    from let_backends.tasmota.protocol import SocketError, TasmotaSocket

    try:
        if address is None:
            if config_file is None:
                raise click.UsageError("give --config SERVER-CONFIG or --address IP[:PORT]")
            sockets = load_server_config(config_file)
            if host not in sockets:
                raise click.UsageError(f"{host!r} is not in {config_file}; it has {', '.join(sockets)}")
            cfg = sockets[host]
        else:
            cfg = parse_server_config({host: {"address": address, "user": user, "password": password}},
                                      "--address")[host]
        sock = TasmotaSocket(cfg.address, cfg.user, cfg.password, timeout=5.0, retries=1)
        answers = sock.calibrate(volts=volts, watts=watts, amps=amps)
    except (LetError, SocketError) as exc:
        _fail(exc)
    for command, answer in answers.items():
        click.echo(f"{command}: {json.dumps(answer)}")


@gt.command()
@click.option("--sockets", "count", default=1, show_default=True, type=click.IntRange(1, 200))
@click.option("--watts", multiple=True, type=float, help="Constant power per socket (repeat; the last repeats).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address (127.0.0.x).")
@click.option("--base-port", default=0, show_default=True, type=int, help="First port; 0 picks free ports.")
@click.option("--time-scale", default=1.0, show_default=True, type=float, help="Emulated seconds per real second.")
@click.option("--password", default="", help="Web password the emulated sockets require.")
@click.option("--write-config", type=click.Path(dir_okay=False), default=None,
              help="Write a server config for these sockets here.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C).")
def emulate(count: int, watts: tuple[float, ...], host: str, base_port: int, time_scale: float,
            password: str, write_config: str | None, duration: float | None) -> None:
    """Run emulated Tasmota sockets on loopback (for demos and tests without hardware)."""
    from let_backends.tasmota.emulator import EmulatorFarm

    if not host.startswith("127."):
        raise click.UsageError("the emulator only listens on loopback addresses (127.x.x.x)")
    powers = [watts[min(i, len(watts) - 1)] if watts else 100.0 for i in range(count)]
    try:
        farm = EmulatorFarm(powers, host=host, base_port=base_port, time_scale=time_scale,
                            password=password).start()
    except OSError as exc:
        _fail(exc)
    cfg = farm.config()
    for name, s in farm.sockets.items():
        click.echo(f"{name}: http://{s.address}/cm?cmnd=Status%208  ({s.power} W)")
    if write_config:
        Path(write_config).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        click.echo(f"Server config written to {write_config}; run `let gt serve --config {write_config}`")
    else:
        click.echo(json.dumps(cfg))
    sys.stdout.flush()
    try:
        if duration is None:
            while True:
                time.sleep(3600)
        time.sleep(duration)
    except KeyboardInterrupt:
        pass
    finally:
        farm.close()


@gt.command()
def hosts() -> None:
    """Hosts the configured server meters, with live power."""
    from let_backends.tasmota.client import GroundTruthClient, GroundTruthError
    from let_backends.tasmota.config import NOT_CONFIGURED

    try:
        location = server_location()
        if location is None:
            raise GroundTruthError(NOT_CONFIGURED)
        client = GroundTruthClient(location)
        statuses: list[dict[str, Any]] = client._call("GET", "/hosts")
    except LetError as exc:
        _fail(exc)
    for st in statuses:
        power = st.get("power_w")
        click.echo(f"{st['host']:<20} {'online ' if st.get('online') else 'OFFLINE'} "
                   f"{'' if power is None else f'{power:7.1f} W'}  metered {st.get('metered_kwh', 0):.5f} kWh"
                   f"  sessions {st.get('sessions', 0)}")
