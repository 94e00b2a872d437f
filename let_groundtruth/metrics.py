"""``GET /metrics``: the server's sockets in Prometheus's text format (``prometheus-client``, extras
``prometheus`` and ``server``).

Per metered host (label ``host``; never a session id, which would be a capability and one time
series per run): power (gauge, W), energy (counter, J), reading age, outages and interpolated time.
The energy counter is the meter's own sum of counter increases, so the socket's resets and
reboots never make it fall (they become interpolated intervals), and it is persisted with the
meter, so a restarted server continues it. Until a restarted server's first reading closes the
downtime, a host's energy sample is left out: the value persisted before a crash may lag the last
one scraped by a poll, and the first reading adds that back (from the socket's own counter).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

KWH_J = 3.6e6


class GroundTruthCollector:
    """A custom collector: every scrape reads the meters as they are (no second copy to keep)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []  # the families depend on the config; no checks at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def gauge(name: str, doc: str, unit: str = "") -> Any:
            return GaugeMetricFamily(name, doc, labels=["host"], unit=unit)

        def counter(name: str, doc: str, unit: str = "") -> Any:
            return CounterMetricFamily(name, doc, labels=["host"], unit=unit)

        up = gauge("let_gt_socket_up", "1 while the socket answers the server's polls, else 0")
        power = gauge("let_gt_socket_power_watts", "The socket's last power reading", "watts")
        age = gauge("let_gt_socket_reading_age_seconds", "Seconds since the socket's last good reading", "seconds")
        energy = counter("let_gt_socket_energy_joules", "Energy metered at the socket since the server began "
                         "metering it (monotonic across the socket's counter resets and server restarts)", "joules")
        estimated = counter("let_gt_socket_estimated_energy_joules", "Part of the energy that was interpolated "
                            "from power readings (socket reset, rebooted or silent)", "joules")
        interpolated = counter("let_gt_socket_interpolated_seconds", "Seconds whose energy was interpolated "
                               "(closed intervals)", "seconds")
        gaps = counter("let_gt_socket_gaps", "Outages: times the socket stopped answering")
        gap_seconds = counter("let_gt_socket_gap_seconds", "Seconds of closed outages", "seconds")
        resets = counter("let_gt_socket_counter_resets", "Drops of the socket's own energy counter (reset)")
        reboots = counter("let_gt_socket_reboots", "Socket reboots seen (counter back to its last save)")
        implausible = counter("let_gt_socket_implausible_readings", "Readings refused as implausible")
        sessions = gauge("let_gt_sessions_open", "Open sessions on the host")
        open_sessions = self.service.open_sessions()
        for host, meter in self.service.meters.items():
            labels = [host]
            state = meter.state()
            now = meter.clock()
            online = state["last_ok"] is not None and state["failing_since"] is None
            up.add_metric(labels, 1.0 if online else 0.0)
            last = state["last"]
            if last is not None:
                power.add_metric(labels, float(last["power_w"]))
            if state["last_ok"] is not None:
                age.add_metric(labels, max(now - float(state["last_ok"]), 0.0))
            if not state["awaiting_first_reading"]:
                energy.add_metric(labels, float(state["energy_kwh"]) * KWH_J)
                estimated.add_metric(labels, float(state["estimated_kwh"]) * KWH_J)
            interpolated.add_metric(labels, float(state["interp_s"]))
            gaps.add_metric(labels, float(state["gaps"]))
            gap_seconds.add_metric(labels, float(state["gap_s_closed"]))
            resets.add_metric(labels, float(state["resets"]))
            reboots.add_metric(labels, float(state["reboots"]))
            implausible.add_metric(labels, float(state["implausible"]))
            sessions.add_metric(labels, float(open_sessions.get(host, 0)))
        yield from (up, power, age, energy, estimated, interpolated, gaps, gap_seconds, resets, reboots,
                    implausible, sessions)


def exposition(service: Any) -> tuple[bytes, str]:
    """The text exposition and its content type; ``ImportError`` without prometheus-client."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(GroundTruthCollector(service))
    return generate_latest(registry), CONTENT_TYPE_LATEST
