"""ServiceNow calls and secret fetches per episode, for the standard fake-sensor scenarios.

Each scenario runs once through ``devtools.simulate.run`` in virtual time
(``fast=True``), with the local stand-in and the default settings (period 5 s,
debounce 3 samples, updates at most every 30 minutes), for the scenario's own
length.
"""

from __future__ import annotations

import tempfile
from typing import Any, Dict, Sequence

SCENARIOS = ("humid-spell", "heat-spike", "ramp", "flapping", "steady", "noisy")


def _per_episode(value: int, episodes: int) -> Any:
    return round(value / episodes, 2) if episodes else None


def measure(scenarios: Sequence[str] = SCENARIOS, seed: int = 1) -> Dict[str, Any]:
    from devtools.simulate import SimulationOptions, run

    results: Dict[str, Any] = {}
    for scenario in scenarios:
        with tempfile.TemporaryDirectory(prefix=f"bench-sim-{scenario}-") as state_dir:
            summary = run(
                SimulationOptions(scenario=scenario, fast=True, seed=seed, state_dir=state_dir)
            )
        calls = summary["servicenow_calls"]
        episodes = summary["episodes"]["breach"]
        results[scenario] = {
            "samples": summary["samples"],
            "episodes": episodes,
            "updates": summary["episodes"]["update"],
            "incidents_opened": summary["incidents_opened"],
            "incidents_updated": summary["incidents_updated"],
            "incidents_resolved": summary["incidents_resolved"],
            "GET": calls.get("GET", 0),
            "POST": calls.get("POST", 0),
            "PATCH": calls.get("PATCH", 0),
            "TOKEN": calls.get("TOKEN", 0),
            "secret_fetches": summary["secret_fetches"],
            "calls_per_episode": _per_episode(
                sum(calls.get(k, 0) for k in ("GET", "POST", "PATCH", "TOKEN")), episodes
            ),
            "secret_fetches_per_episode": _per_episode(summary["secret_fetches"], episodes),
            "drained": summary["drained"],
            "wall_seconds": summary["wall_seconds"],
        }
    return results
