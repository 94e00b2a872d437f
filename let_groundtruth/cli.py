"""``lett gt ...``: run the ground-truth server, point clients at it, emulate and calibrate sockets."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from let_backends.tasmota.config import DEFAULT_RATED_MAX_W, DEFAULT_SERVER_PORT, server_location, write_remote_config
from let_core.errors import LetError
from let_groundtruth.config import is_loopback, load_server_config, parse_server_config
from let_groundtruth.service import DEFAULT_LEASE_S, MAX_SESSIONS_PER_CLIENT, MAX_SESSIONS_PER_HOST


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


@click.group(name="gt")
def gt() -> None:
    """Ground-truth energy at the wall socket (Tasmota smart sockets)."""


@gt.command()
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False),
              help="JSON mapping host names to socket addresses (\"ip[:port]\" or {address,user,password}).")
@click.option("--host", default=None,
              help="Interface to listen on [default: 127.0.0.1 without a token, else 0.0.0.0]. Any other than "
                   "loopback requires a token: one is generated and kept in the state dir unless given.")
@click.option("--port", default=DEFAULT_SERVER_PORT, show_default=True, type=int)
@click.option("--token", default=None, help="Bearer token clients must send [default: $LET_GT_TOKEN].")
@click.option("--no-token", is_flag=True, help="Serve interfaces other than loopback without a token (warned).")
@click.option("--poll-interval", default=1.0, show_default=True, type=float, help="Seconds between socket reads.")
@click.option("--socket-timeout", default=2.0, show_default=True, type=float,
              help="Total seconds one socket request may take (connect to last byte).")
@click.option("--admin-token", default=None,
              help="Second token that may list every session id [default: $LET_GT_ADMIN_TOKEN].")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Where sessions and counters persist across restarts [default: $LET_HOME/gt-server].")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), default=None, help="PEM certificate: serve HTTPS.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), default=None, help="PEM private key of --tls-cert.")
@click.option("--rated-max-w", default=DEFAULT_RATED_MAX_W, show_default=True, type=float,
              help="The sockets' rated maximum power: faster counter rises are implausible, never energy.")
@click.option("--max-sessions-per-host", default=MAX_SESSIONS_PER_HOST, show_default=True, type=click.IntRange(1),
              help="Open sessions one client address may hold on one host.")
@click.option("--max-sessions-per-client", default=MAX_SESSIONS_PER_CLIENT, show_default=True, type=click.IntRange(1),
              help="Open sessions one client address may hold in all.")
@click.option("--session-lease", "lease_s", default=DEFAULT_LEASE_S, show_default=True, type=click.FloatRange(min=1.0),
              help="Seconds a session lives without renewal (GET /sessions/ID; LET's client renews every "
                   "30 s); then it expires, its figures so far kept for its opener.")
@click.option("--wait-config", default=30.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Seconds to wait for a --config file that does not exist yet (or is still being written).")
def serve(config_file: str, host: str | None, port: int, token: str | None, no_token: bool, poll_interval: float,
          socket_timeout: float, admin_token: str | None, state_dir: str | None, tls_cert: str | None,
          tls_key: str | None, rated_max_w: float, max_sessions_per_host: int, max_sessions_per_client: int,
          lease_s: float, wait_config: float) -> None:
    """Run the ground-truth server in front of the configured sockets."""
    from let_core.config import gt_env
    from let_groundtruth.config import default_state_dir, exposure, wait_for_config

    state = Path(state_dir) if state_dir else default_state_dir()
    try:
        plan = exposure(host, gt_env("TOKEN") if token is None else token, no_token, state)
        sockets = wait_for_config(config_file, wait_config)
        from let_groundtruth.server import RunningServer

        server = RunningServer(sockets, host=plan.host, port=port, token=plan.token, poll_interval=poll_interval,
                               socket_timeout=socket_timeout,
                               admin_token=gt_env("ADMIN_TOKEN") if admin_token is None else admin_token,
                               state_dir=str(state), tls_cert=tls_cert, tls_key=tls_key, rated_max_w=rated_max_w,
                               max_sessions_per_host=max_sessions_per_host,
                               max_sessions_per_client=max_sessions_per_client, lease_s=lease_s)
    except (LetError, ValueError, ImportError) as exc:
        _fail(exc)
    restored = server.service.restored_sessions
    where = "loopback only" if is_loopback(plan.host) else ("token required" if plan.token else "NO token")
    click.echo(f"LET ground-truth server on {server.scheme}://{plan.host}:{port} ({where}; docs at /docs, "
               f"metrics at /metrics) metering {', '.join(sockets)}; state in {state}"
               + (f"; resumed {restored} open sessions" if restored else ""))
    if is_loopback(plan.host) and not plan.token:
        click.echo("Only this computer can reach it. To serve others: --host 0.0.0.0 (a token is generated "
                   "and printed), or --token T.")
    if plan.generated is not None:
        import socket

        click.echo(f"Token kept in {plan.generated} (mode 600). On each client run once:\n"
                   f"  lett gt config --host {socket.gethostname()} --port {port} --token {plan.token}")
    if plan.warning:
        click.echo(plan.warning, err=True)
    if plan.token and not tls_cert:
        click.echo("Note: the token travels in clear text over HTTP; use --tls-cert/--tls-key on untrusted "
                   "networks.", err=True)
    sys.stdout.flush()
    server.serve()


@gt.command()
@click.option("--host", default=None, help="The ground-truth server's name or IP.")
@click.option("--port", default=DEFAULT_SERVER_PORT, show_default=True, type=int)
@click.option("--token", default=None, help="The server's token, kept in $LET_HOME/GT_REMOTE_TOKEN (mode 600); "
                                            "LET_GT_TOKEN overrides it. \"\" removes a kept one.")
def config(host: str | None, port: int, token: str | None) -> None:
    """Store the server's address in $LET_HOME/GT_REMOTE_CONFIG (no --host: show the current one)."""
    try:
        if host is None:
            location = server_location()
            click.echo(f"{location.host}:{location.port} (from {location.source})" if location
                       else "not configured; run `lett gt config --host SERVER-IP --port PORT`")
            return
        path = write_remote_config(host, port, token)
    except LetError as exc:
        _fail(exc)
    click.echo(f"Stored ground-truth server {host}:{port} in {path}" + (" with its token" if token else ""))


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
@click.option("--tolerance", default=2.0, show_default=True, type=float,
              help="Percent the measured power may differ from --watts for a pass.")
def calibrate(host: str, volts: float | None, watts: float | None, amps: float | None,
              config_file: str | None, address: str | None, user: str, password: str,
              tolerance: float) -> None:
    """Calibrate HOST's socket against a known constant load (e.g. an 11 W bulb):
    SaveData 1, VoltageSet, PowerSet, then Status 8 to check; ends with a verdict."""
    from let_groundtruth.protocol import SocketError, TasmotaSocket

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
    try:
        measured = float(answers["Status 8"]["StatusSNS"]["ENERGY"]["Power"])
    except (KeyError, TypeError, ValueError):
        raise click.ClickException("verdict: FAILED - the socket's Status 8 has no ENERGY.Power reading; "
                                   "is this an energy-monitoring Tasmota socket?") from None
    if watts is None:
        click.echo(f"verdict: measured {measured:g} W; give --watts (the load's true power) to check it")
        return
    off = (measured - watts) / watts * 100.0 if watts else float("inf")
    if watts > 0:
        from let_core.results.calibration import save_socket_check

        # Kept, so statements can give this socket's metered figures an interval from it.
        click.echo(f"check kept in {save_socket_check(host, watts, measured)}")
    if abs(off) <= tolerance:
        click.echo(f"verdict: OK - measured {measured:g} W vs expected {watts:g} W ({off:+.1f}%, within "
                   f"{tolerance:g}%)")
    else:
        raise click.ClickException(f"verdict: OFF - measured {measured:g} W vs expected {watts:g} W ({off:+.1f}%, "
                                   f"beyond {tolerance:g}%): keep the load constant and run calibrate again")


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
    from let_groundtruth.emulator import EmulatorFarm

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
        click.echo(f"Server config written to {write_config}; run `lett gt serve --config {write_config}`")
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
@click.option("--wait", "wait_s", default=0.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Seconds to wait for a server that is still starting (it is not reachable yet).")
def hosts(wait_s: float) -> None:
    """Hosts the configured server meters, with live power."""
    from let_backends.tasmota.client import GroundTruthClient, GroundTruthError
    from let_backends.tasmota.config import NOT_CONFIGURED

    deadline = time.monotonic() + wait_s
    while True:
        try:
            location = server_location()
            if location is None:
                raise GroundTruthError(NOT_CONFIGURED)
            client = GroundTruthClient(location)
            statuses: list[dict[str, Any]] = client.statuses()
            break
        except GroundTruthError as exc:
            if exc.cause != "unreachable" or time.monotonic() >= deadline:
                _fail(exc)
            time.sleep(0.2)
        except LetError as exc:
            _fail(exc)
    for st in statuses:
        power = st.get("power_w")
        click.echo(f"{st['host']:<20} {'online ' if st.get('online') else 'OFFLINE'} "
                   f"{'' if power is None else f'{power:7.1f} W'}  metered {st.get('metered_kwh', 0):.5f} kWh"
                   f"  sessions {st.get('sessions', 0)}")
