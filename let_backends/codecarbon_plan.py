"""CodeCarbon's hardware plan, kept across processes.

CodeCarbon 3.3 probes the hardware once per process (``codecarbon/core/hardware_cache.py``):
py-cpuinfo's one-second clock measurement in a child process, RAPL, GPU and RAM detection. The
outcome is a small "plan" (which tracker measures CPU, GPU and RAM, the detected models, and a spec
per hardware object) that CodeCarbon can rebuild hardware from. LET writes that plan to a file and
hands it back to CodeCarbon in the next process, so only the first tracked process after a boot pays
the probe.

A plan is used only when everything that could change it is the same: the host, the boot (a
reboot may bring other hardware or drivers), the CodeCarbon version and installation, and
CodeCarbon's own cache key (tracking mode, GPU ids, forced powers, RAPL options), which LET reads
from the constructed tracker with CodeCarbon's own ``make_key``. A changed key, a file that does
not parse or belongs to something else, or a CodeCarbon without this API means a normal probe.

Files live in LET's cache folder (``$LET_CACHE_DIR``, else ``$LET_HOME/cache``), never in a
user's ``output_dir``; each is written to a temporary file and moved into place with
``os.replace``, so concurrent writers cannot leave a torn file.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from typing import Any

from let_core.atomicfile import write_atomically
from let_core.config import cache_dir
from let_core.jobs import boot_id

FORMAT = "let-codecarbon-plan/1"
_PLAN_FIELDS = ("ram_tracker", "cpu_tracker", "gpu_tracker", "conf", "hardware_specs")


def _hardware_cache() -> Any | None:
    """CodeCarbon's hardware-cache module, or None for a CodeCarbon without it."""
    try:
        from codecarbon.core import hardware_cache
    except Exception:
        return None
    needed = ("make_key", "_plans", "_cache_lock", "_HardwarePlan", "HardwareKind")
    return hardware_cache if all(hasattr(hardware_cache, n) for n in needed) else None


def plan_key(tracker: Any) -> dict[str, Any] | None:
    """Everything that decides the plan of a constructed (not yet started) CodeCarbon tracker."""
    module = _hardware_cache()
    if module is None or not boot_id():
        return None
    try:
        import codecarbon

        key = module.make_key(tracker)
        fields = {name: getattr(key, name) for name in key.__dataclass_fields__}
        version = str(getattr(codecarbon, "__version__", ""))
        location = str(Path(codecarbon.__file__).resolve().parent)
    except Exception:
        return None
    # JSON round trip so that a key read back from a file compares equal (tuples become lists).
    return json.loads(json.dumps({
        "format": FORMAT, "hostname": socket.gethostname(), "boot_id": boot_id(),
        "codecarbon_version": version, "codecarbon_location": location, "codecarbon_key": fields,
    }, sort_keys=True, default=str))


def plan_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir() / f"codecarbon-plan-{digest}.json"


def _valid_plan(plan: Any, module: Any) -> bool:
    if not isinstance(plan, dict) or set(plan) != set(_PLAN_FIELDS):
        return False
    if not all(isinstance(plan[n], str) for n in ("ram_tracker", "cpu_tracker", "gpu_tracker")):
        return False
    if not isinstance(plan["conf"], dict) or not isinstance(plan["hardware_specs"], list):
        return False
    kinds = {kind.value for kind in module.HardwareKind}
    return all(isinstance(spec, dict) and spec.get("kind") in kinds for spec in plan["hardware_specs"])


#: Where a tracker's plan comes from: CodeCarbon's in-process cache, LET's file, or a probe.
PROCESS, FILE, PROBE = "process", "file", "probe"


def seed(tracker: Any) -> str:
    """Give CodeCarbon the stored plan for this tracker's key; say where its plan will come from.

    ``PROCESS``: CodeCarbon already holds a plan for the key (a second tracker in this process);
    ``FILE``: the stored plan was handed to CodeCarbon; ``PROBE``: CodeCarbon will probe.
    """
    module = _hardware_cache()
    key = plan_key(tracker)
    if module is None or key is None:
        return PROBE
    try:
        cc_key = module.make_key(tracker)
        with module._cache_lock:
            if cc_key in module._plans:
                return PROCESS
        stored = json.loads(plan_path(key).read_text())
    except (OSError, ValueError, TypeError):  # no file yet, unreadable, or not JSON
        return PROBE
    if not isinstance(stored, dict) or stored.get("key") != key or not _valid_plan(stored.get("plan"), module):
        return PROBE
    try:
        plan = module._HardwarePlan(**stored["plan"])
        with module._cache_lock:
            module._plans.setdefault(cc_key, plan)
    except Exception:
        return PROBE
    return FILE


def forget(tracker: Any) -> None:
    """Drop the plan for this tracker's key, in this process and on disk (a re-probe follows)."""
    module = _hardware_cache()
    key = plan_key(tracker)
    if module is None or key is None:
        return
    try:
        with module._cache_lock:
            module._plans.pop(module.make_key(tracker), None)
        plan_path(key).unlink(missing_ok=True)
    except Exception:
        pass


def save(tracker: Any) -> None:
    """Store the plan CodeCarbon built for this (started) tracker. Failures only cost a re-probe."""
    module = _hardware_cache()
    key = plan_key(tracker)
    if module is None or key is None:
        return
    try:
        with module._cache_lock:
            plan = module._plans.get(module.make_key(tracker))
        if plan is None:
            return
        body = json.dumps({"key": key, "plan": {n: getattr(plan, n) for n in _PLAN_FIELDS}},
                          sort_keys=True, indent=1)
        target = plan_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, body.encode("utf-8"))
    except (OSError, TypeError, ValueError):  # unwritable cache dir or a plan JSON cannot hold
        pass

