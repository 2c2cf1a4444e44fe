"""A site's stories for ``simulate --fleet``: what each of N Pis reads, and when it is silent.

Correlated across devices, around the default limits (50 %RH, hysteresis 1.0):

* ``site-humid-spell``: five minutes in, most devices (nine in ten) breach within
  two minutes of each other (an HVAC failure on a floor), up to 68 %RH, and
  recover one by one over the next ten minutes;
* ``switch-failure``: ten minutes in, a third of the devices (every third) go
  silent together for fifteen minutes (their network switch failed), then
  report again.

Each device has its own random source (``seed`` and its index), so a run is
reproducible and the devices differ.
"""

from __future__ import annotations

import random
from typing import Dict, List, Optional

from agent.clock import Clock
from agent.sensors.base import Reading, Sensor

SPELL_START = 300.0
SPELL_SPREAD = 120.0  # the breaches come within two minutes
SPELL_HOLD = 240.0  # the first recovery this long after the last breach
RECOVERY_SPREAD = 600.0  # recoveries one by one over ten minutes
RAMP = 30.0
SWITCH_DOWN = (600.0, 1500.0)  # elapsed seconds the switch is down

STORIES: Dict[str, str] = {
    "site-humid-spell": "most devices breach humidity within two minutes, recover one by one",
    "switch-failure": "a third of the devices go silent together for 15 minutes",
}
DURATION = 3600.0  # an hour of site time


class Story:
    """The whole site's story: per device, its spell (if any) and its silences."""

    def __init__(self, name: str, devices: List[str], seed: int) -> None:
        self.name = name
        self.devices = devices
        rng = random.Random(seed)
        self.spells: Dict[str, tuple] = {}
        self.silent: Dict[str, tuple] = {}
        if name == "site-humid-spell":
            order = list(devices)
            rng.shuffle(order)
            joined = [d for i, d in enumerate(order) if i % 10 != 9]  # nine in ten
            last_breach = SPELL_START + SPELL_SPREAD
            for i, device in enumerate(joined):
                start = SPELL_START + rng.uniform(0.0, SPELL_SPREAD)
                end = last_breach + SPELL_HOLD + RECOVERY_SPREAD * (i + 1) / len(joined)
                self.spells[device] = (start, end, rng.uniform(58.0, 68.0))
        elif name == "switch-failure":
            for i, device in enumerate(devices):
                if i % 3 == 0:
                    self.silent[device] = SWITCH_DOWN

    def alive(self, device: str, elapsed: float) -> bool:
        """Whether ``device`` publishes at ``elapsed`` seconds into the run."""
        window = self.silent.get(device)
        return window is None or not window[0] <= elapsed < window[1]

    def sensor(self, device: str, index: int, seed: int, clock: Clock, start: float) -> Sensor:
        return SiteSensor(
            self.spells.get(device), random.Random(seed * 100_003 + index), clock, start
        )


class SiteSensor(Sensor):
    """One Pi of the story: its own baseline and noise, and its spell if it has one."""

    name = "fleet"

    def __init__(
        self, spell: Optional[tuple], rng: random.Random, clock: Clock, start: float
    ) -> None:
        super().__init__(clock)
        self.spell = spell
        self.rng = rng
        self.start = start
        self.base_humidity = 40.0 + rng.uniform(-4.0, 4.0)
        self.base_temperature = 22.0 + rng.uniform(-1.5, 1.5)

    def read(self) -> Reading:
        now = self.clock.time()
        t = now - self.start
        humidity = self.base_humidity
        if self.spell is not None:
            begin, end, peak = self.spell
            if begin <= t < end:
                rise = min(1.0, (t - begin) / RAMP)
                humidity += (peak - humidity) * rise
            elif end <= t < end + RAMP:
                humidity += (peak - humidity) * (1.0 - (t - end) / RAMP) * 0.3
        noise = self.rng.random() - 0.5  # one draw a reading: a fleet of 1,000 reads a lot
        return Reading(
            now,
            round(self.base_temperature + 0.2 * noise, 2),
            round(humidity + 0.6 * noise, 2),
            round(1012.0 + 0.1 * noise, 2),
        )
