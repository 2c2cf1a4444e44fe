"""A simulated Sense HAT that tells a story.

Values are a function of the time elapsed since the sensor started, measured
on the sensor's own clock, so under a :class:`~agent.clock.VirtualClock` a
ten-minute humid spell plays out in virtual time. With a seed, the noise and
the faults are reproducible.

The scenarios are written around the default limits (30 °C, 50 %RH, hysteresis
1.0): each one exercises a behaviour of the alerting path, not just a number.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

from ..clock import Clock
from ..errors import ConfigError, SensorError
from .base import Reading, Sensor

# (elapsed seconds, random source, noise scale) -> (temperature, humidity, pressure)
Profile = Callable[[float, random.Random, float], Tuple[float, float, float]]
Values = Tuple[Optional[float], Optional[float], Optional[float]]
Faults = Union[str, Iterable[str], Mapping[str, float]]

FAULTS = ("stuck", "invalid-zeros", "io-errors")
DEFAULT_FAULT_RATE = 0.05
# A stuck spell started by the layered ``stuck`` fault lasts this long, seconds.
STUCK_SPELL = (60.0, 300.0)


@dataclass(frozen=True)
class Scenario:
    """A named story: a value profile over elapsed time, plus the faults it injects."""

    name: str
    description: str
    duration: float  # seconds: the natural length of the story
    profile: Profile
    faults: Mapping[str, float] = field(default_factory=dict)  # fault name -> chance per read
    stuck_window: Optional[Tuple[float, float]] = None  # elapsed seconds [start, end)


def _ramp(t: float, t0: float, t1: float, v0: float, v1: float) -> float:
    """``v0`` before ``t0``, ``v1`` after ``t1``, linear in between."""
    if t <= t0:
        return v0
    if t >= t1:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def _pressure(t: float, rng: random.Random, noise: float) -> float:
    # A slow weather-like drift of under a hectopascal an hour.
    return 1013.0 + 0.8 * math.sin(2 * math.pi * t / 3600.0) + rng.gauss(0.0, 0.05 * noise)


def _steady(t: float, rng: random.Random, noise: float) -> Tuple[float, float, float]:
    return (
        22.0 + rng.gauss(0.0, 0.05 * noise),
        40.0 + rng.gauss(0.0, 0.15 * noise),
        _pressure(t, rng, noise),
    )


def _temperature_ramp(t: float, rng: random.Random, noise: float) -> Tuple[float, float, float]:
    return (
        _ramp(t, 0.0, 600.0, 22.0, 36.0) + rng.gauss(0.0, 0.05 * noise),
        40.0 + rng.gauss(0.0, 0.15 * noise),
        _pressure(t, rng, noise),
    )


def _humid_spell(t: float, rng: random.Random, noise: float) -> Tuple[float, float, float]:
    if t < 90.0:
        humidity = _ramp(t, 60.0, 90.0, 40.0, 62.0)
    elif t < 690.0:
        # The plateau wanders a few tenths, as a real room does.
        humidity = 62.0 + 0.3 * math.sin(2 * math.pi * (t - 90.0) / 240.0)
    else:
        humidity = _ramp(t, 690.0, 720.0, 62.0, 40.0)
    sigma = 0.25 if 60.0 <= t < 720.0 else 0.15
    return (
        22.0 + rng.gauss(0.0, 0.05 * noise),
        humidity + rng.gauss(0.0, sigma * noise),
        _pressure(t, rng, noise),
    )


def _heat_spike(t: float, rng: random.Random, noise: float) -> Tuple[float, float, float]:
    temperature = 38.0 if 120.0 <= t < 180.0 else 22.0
    return (
        temperature + rng.gauss(0.0, 0.05 * noise),
        40.0 + rng.gauss(0.0, 0.15 * noise),
        _pressure(t, rng, noise),
    )


def _flapping(t: float, rng: random.Random, noise: float) -> Tuple[float, float, float]:
    humidity = 50.0 + 0.6 * math.sin(2 * math.pi * t / 20.0) + rng.uniform(-0.2, 0.2) * noise
    # Clamped so it crosses the limit but never leaves the hysteresis band.
    humidity = min(50.8, max(49.2, humidity))
    return 22.0 + rng.gauss(0.0, 0.05 * noise), humidity, _pressure(t, rng, noise)


def _noisy(t: float, rng: random.Random, noise: float) -> Tuple[float, float, float]:
    temperature = 22.0 + rng.gauss(0.0, 1.0 * noise)
    humidity = 40.0 + rng.gauss(0.0, 1.0 * noise)
    if rng.random() < 0.02:
        # One wild sample at a time, the kind debounce exists for.
        jump = rng.choice((-1.0, 1.0)) * rng.uniform(8.0, 14.0)
        if rng.random() < 0.5:
            temperature += jump
        else:
            humidity += jump
    return temperature, humidity, _pressure(t, rng, noise)


SCENARIOS: Dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("steady", "22 °C, 40 %RH, 1013 hPa with a little noise.", 600.0, _steady),
        Scenario(
            "ramp",
            "Temperature climbs from 22 to 36 °C over 10 minutes, then holds.",
            900.0,
            _temperature_ramp,
        ),
        Scenario(
            "humid-spell",
            "Humidity 40 %RH, rises to ~62 at 60-90 s, holds 10 minutes, back to 40 by 720 s.",
            900.0,
            _humid_spell,
        ),
        Scenario(
            "heat-spike", "Temperature jumps to 38 °C for 60 s from 120 s.", 600.0, _heat_spike
        ),
        Scenario(
            "flapping",
            "Humidity crosses 50 %RH constantly but stays inside the band (49.2-50.8).",
            600.0,
            _flapping,
        ),
        Scenario("noisy", "Steady values, noise of ±2 and an occasional outlier.", 600.0, _noisy),
        Scenario(
            "stuck",
            "Steady, then the chip repeats one exact reading from 120 s to 420 s.",
            600.0,
            _steady,
            stuck_window=(120.0, 420.0),
        ),
        Scenario(
            "invalid-zeros",
            "Steady; one read in ten has temperature or humidity marked invalid (None).",
            600.0,
            _steady,
            faults={"invalid-zeros": 0.1},
        ),
        Scenario(
            "io-errors",
            "Steady; one read in ten raises SensorError.",
            600.0,
            _steady,
            faults={"io-errors": 0.1},
        ),
    )
}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; :class:`ConfigError` naming the valid ones otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(
            "unknown fake-sensor scenario {!r}; use one of {}".format(name, ", ".join(SCENARIOS))
        )


def _fault_rates(faults: Faults) -> Dict[str, float]:
    if isinstance(faults, str):
        faults = [f.strip() for f in faults.split(",") if f.strip()]
    if isinstance(faults, Mapping):
        rates = {str(k): float(v) for k, v in faults.items()}
    else:
        rates = {str(f): DEFAULT_FAULT_RATE for f in faults}
    for name, rate in rates.items():
        if name not in FAULTS:
            raise ConfigError("unknown fault {!r}; use any of {}".format(name, ", ".join(FAULTS)))
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"fault rate for {name!r} must be in [0, 1], got {rate}")
    return rates


class FakeSensor(Sensor):
    """A sensor that plays a :data:`SCENARIOS` story, with optional injected faults.

    ``start`` is the clock time the story begins (default: now). ``faults``
    layers extra faults on any scenario: names (at a 5 % chance per read each)
    or a mapping of name to chance. ``noise`` scales the scenario's random
    noise: ``0`` gives clean curves, ``None`` means ``1``.
    """

    name = "fake"

    def __init__(
        self,
        scenario: str = "steady",
        seed: Optional[int] = None,
        clock: Optional[Clock] = None,
        start: Optional[float] = None,
        faults: Faults = (),
        noise: Optional[float] = None,
    ) -> None:
        super().__init__(clock)
        self.scenario = get_scenario(scenario)
        self.start = self.clock.time() if start is None else float(start)
        self.noise = 1.0 if noise is None else float(noise)
        if not self.noise >= 0.0:
            raise ConfigError(f"noise must be 0 or more, got {noise}")
        self.faults = dict(self.scenario.faults)
        self.faults.update(_fault_rates(faults))
        self._rng = random.Random(seed)
        self._stuck: Optional[Values] = None
        self._stuck_until = 0.0
        self._closed = False

    def elapsed(self) -> float:
        """Seconds of the story played so far, on the sensor's clock."""
        return max(0.0, self.clock.time() - self.start)

    def read(self) -> Reading:
        if self._closed:
            raise SensorError("the fake sensor is closed")
        now = self.clock.time()
        t = max(0.0, now - self.start)
        if self._chance("io-errors"):
            raise SensorError(f"simulated I/O error reading the fake sensor at t={t:.0f} s")
        values: Values = self.scenario.profile(t, self._rng, self.noise)
        values = self._stick(t, values)
        if self._chance("invalid-zeros"):
            # The chip flags one HTS221 measurement invalid; the real backend makes that None.
            lost = self._rng.randrange(2)
            values = tuple(None if i == lost else v for i, v in enumerate(values))  # type: ignore[assignment]
        return Reading(now, *values)

    def close(self) -> None:
        self._closed = True

    def _chance(self, fault: str) -> bool:
        rate = self.faults.get(fault, 0.0)
        return rate > 0.0 and self._rng.random() < rate

    def _stick(self, t: float, values: Values) -> Values:
        if self._stuck is not None and t < self._stuck_until:
            return self._stuck
        self._stuck = None
        window = self.scenario.stuck_window
        if window is not None and window[0] <= t < window[1]:
            self._stuck, self._stuck_until = values, window[1]
        elif self._chance("stuck"):
            self._stuck, self._stuck_until = values, t + self._rng.uniform(*STUCK_SPELL)
        return values
