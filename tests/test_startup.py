"""What a function does when the core loads it and starting fails."""

from __future__ import annotations

from agent import startup
from agent.errors import ConfigError, SensorError


class Service:
    started = False

    def start(self):
        self.started = True


class ImmediateTimer:
    """Runs the retry at once and remembers the delay it was asked to wait."""

    delays: list = []

    def __init__(self, delay, function, args=()):
        self.delays.append(delay)
        self.function, self.args = function, args
        self.daemon = False

    def start(self):
        self.function(*self.args)


def test_a_device_not_ready_at_boot_is_retried_with_growing_delays(monkeypatch, caplog):
    monkeypatch.setattr(startup.threading, "Timer", ImmediateTimer)
    ImmediateTimer.delays = []
    failures = [SensorError("Humidity Init Failed")] * 3
    installed = []

    def build():
        if failures:
            raise failures.pop()
        return Service()

    startup.start_on_core(build, installed.append, "sensor")
    assert ImmediateTimer.delays == [5.0, 10.0, 20.0]
    assert installed and installed[0].started
    assert "sensor function could not start; trying again in 5s" in caplog.text


def test_bad_configuration_is_logged_once_and_not_retried(monkeypatch, caplog):
    monkeypatch.setattr(startup.threading, "Timer", ImmediateTimer)
    ImmediateTimer.delays = []
    installed = []

    def build():
        raise ConfigError("humidLimit must be a finite number, got 'x'")

    startup.start_on_core(build, installed.append, "sensor")
    assert ImmediateTimer.delays == [] and installed == []
    assert "fix the configuration and redeploy" in caplog.text
