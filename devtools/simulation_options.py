"""What one ``edge-agent simulate`` run is asked to do (the command line, as values)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from devtools.console import PROGRESS_EVERY
from devtools.simulation_changes import Timed

DRAIN_LIMIT_S = 3600.0  # simulated seconds to keep retrying after the last reading


@dataclass
class SimulationOptions:
    scenario: str = "humid-spell"
    replay: Optional[str] = None
    duration: Optional[float] = None  # seconds; default: the scenario's length or the file's span
    period: Optional[float] = None  # seconds between readings; default: --set period, else 5
    fast: bool = False
    seed: int = 1
    snow_url: Optional[str] = None
    secret_file: Optional[str] = None
    state_dir: Optional[str] = None  # default: a temporary folder, removed after the run
    device_id: str = "sim-pi"
    outages: Sequence[Tuple[float, float]] = ()  # (start, end) seconds into the run
    environment: Dict[str, str] = field(default_factory=dict)  # extra function variables
    drain_timeout: float = DRAIN_LIMIT_S
    mqtt_url: Optional[str] = None
    mqtt_tls: Dict[str, Optional[str]] = field(default_factory=dict)  # ca, cert, key paths
    mqtt_close_timeout: float = 10.0  # seconds to wait at the end for the broker to take the rest
    progress_every: float = PROGRESS_EVERY  # wall seconds between progress lines
    serve: Optional[str] = None  # [HOST:]PORT of the status page (agent/standalone/status.py)
    changes: Sequence[Timed] = ()  # --at: (seconds into the run, variable, shadow value)
