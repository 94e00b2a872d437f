"""Ground-truth benchmark: accuracy against the emulator's known energy, and load.

    .venv/bin/python bench/bench_tasmota.py [--seconds 60] [--time-scale 1] [--clients 50] [--sessions 20]

Accuracy: one real server (uvicorn, 127.0.0.1) meters emulated sockets; a session of
``--seconds`` emulated seconds at a constant 150 W and one under a varying profile run side by
side. The reference is the emulator's exact integral of its profile over the emulated instants
of the server's first and last reading of the session. ``--time-scale 10`` runs the emulated
clock 10x faster (a 60 s session takes 6 s); the server's clock is not scaled, which only
matters for resets/reboots (none here).

Load: ``--clients`` threads, each doing ``--sessions`` start/stop pairs against one server with
4 emulated sockets; every request's latency is recorded. Numbers on a shared, loaded machine
are noisy.
"""

from __future__ import annotations

import argparse
import math
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from let_groundtruth.config import parse_server_config  # noqa: E402
from let_groundtruth.emulator import EmulatorFarm  # noqa: E402
from let_groundtruth.server import RunningServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def varying(t: float) -> float:
    # a training-like profile: 120 W base, bursts to 300 W, a slow ripple
    return 120.0 + (180.0 if int(t / 7) % 2 else 0.0) + 25.0 * math.sin(t / 3.0)


def accuracy(seconds: float, scale: float) -> None:
    with EmulatorFarm([150.0, varying], names=["const", "vary"], time_scale=scale) as farm:
        with RunningServer(parse_server_config(farm.config()), port=free_port(), token="",
                           poll_interval=1.0) as srv:
            http = requests.Session()
            sessions = {}
            marks = {}
            for host in ("const", "vary"):
                sessions[host] = http.post(f"{srv.url}/hosts/{host}/sessions", timeout=30).json()["session_id"]
                marks[host] = farm.sockets[host].reads[-1][0]  # emulated time of the start reading
            time.sleep(seconds / scale)
            for host in ("const", "vary"):
                result = http.post(f"{srv.url}/sessions/{sessions[host]}/stop", timeout=30).json()
                emu = farm.sockets[host]
                t1 = emu.reads[-1][0]
                truth = emu.true_energy_between(marks[host], t1)
                measured = result["energy_consumed"]
                error = (measured - truth) / truth * 100
                print(f"accuracy {host:5s}: {t1 - marks[host]:6.1f} emulated s, true {truth * 1000:8.4f} Wh, "
                      f"measured {measured * 1000:8.4f} Wh, error {error:+.3f}% "
                      f"(resolution 0.01 Wh = {0.00001 / truth * 100:.3f}% of this session)")


def load(clients: int, per_client: int) -> None:
    with EmulatorFarm([150.0, 200.0, 90.0, 400.0]) as farm:
        hosts = list(farm.sockets)
        with RunningServer(parse_server_config(farm.config()), port=free_port(), token="",
                           poll_interval=1.0) as srv:
            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()

            def client(i: int) -> None:
                http = requests.Session()
                host = hosts[i % len(hosts)]
                mine: list[float] = []
                for _ in range(per_client):
                    try:
                        t0 = time.perf_counter()
                        r = http.post(f"{srv.url}/hosts/{host}/sessions", timeout=60)
                        t1 = time.perf_counter()
                        if r.status_code != 201:
                            raise RuntimeError(f"start {r.status_code} {r.text[:80]}")
                        r2 = http.post(f"{srv.url}/sessions/{r.json()['session_id']}/stop", timeout=60)
                        t2 = time.perf_counter()
                        if r2.status_code != 200 or r2.json()["energy_consumed"] < 0:
                            raise RuntimeError(f"stop {r2.status_code} {r2.text[:80]}")
                        mine += [t1 - t0, t2 - t1]
                    except Exception as exc:  # counted, not raised: the figure is the error count
                        with lock:
                            errors.append(str(exc))
                with lock:
                    latencies.extend(mine)

            t0 = time.perf_counter()
            threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            latencies.sort()
            p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
            print(f"load: {clients} clients x {per_client} sessions on {len(hosts)} sockets: "
                  f"{len(latencies)} requests in {wall:.1f} s ({len(latencies) / wall:.0f} req/s), "
                  f"errors {len(errors)}, latency p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
                  f"max {latencies[-1] * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms")
            for e in errors[:5]:
                print("  error:", e)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    accuracy(args.seconds, args.time_scale)
    load(args.clients, args.sessions)


if __name__ == "__main__":
    main()
