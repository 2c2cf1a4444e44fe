"""The emulator backend headless: the project drives sense_emu's shared state from a scenario.

It runs the installed ``sense_emu`` (its servers, noise model, lock and
``SenseHat`` API) in a private mount namespace, so its ``/dev/shm`` files are
this test's alone, with no display and no ``sense_emu_gui`` on the machine.
"""

from __future__ import annotations

import pytest
from sense_hat_world import HatWorld

pytest.importorskip("sense_emu")


@pytest.fixture
def world(tmp_path) -> HatWorld:
    return HatWorld(tmp_path)


def test_headless_emulator_plays_a_scenario_through_sense_emu(world):
    action = {
        "do": "emulator",
        "environ": {"EDGE_AGENT_SCENARIO": "humid-spell", "EDGE_AGENT_SEED": "3"},
        "steps": [
            # Before the spell: 22 °C, 40 %RH, 1013 hPa, within the chips' accuracy.
            {"advance": 0, "metric": "humidity", "between": [38.0, 42.0]},
            # 100 s into the story the room is humid; the HTS221 follows in about a second.
            {"advance": 100, "metric": "humidity", "between": [59.0, 65.0]},
        ],
    }

    [result] = world.run(action)["results"]

    assert result["headless"] is True
    # No "No emulator detected; spawning sense_emu_gui": nothing tried to open a window.
    assert not [w for w in result["warnings"] if "sense_emu_gui" in w], result["warnings"]
    before, during = result["steps"]
    assert before[0] == pytest.approx(22.0, abs=1.0)
    assert before[1] == pytest.approx(40.0, abs=2.0)
    assert before[2] == pytest.approx(1013.0, abs=1.0)
    assert during[1] == pytest.approx(62.0, abs=3.0)
    # Closing stops the driver and releases the emulator lock.
    assert result["lock_left"] is False
    assert {"rpi-sense-emu-humidity", "rpi-sense-emu-pressure"} <= set(result["shm"])


def test_the_emulator_noise_model_is_applied(world):
    action = {
        "do": "emulator",
        "steps": [
            # The emulated HTS221 gives a new sample every 0.13 s.
            {"advance": 0, "sleep": 0.15, "metric": "humidity", "between": [0, 100]}
            for _ in range(10)
        ],
    }

    [result] = world.run(action)["results"]

    humidities = [h for _, h, _ in result["steps"]]
    assert all(abs(h - 40.0) < 3.0 for h in humidities)
    assert len(set(humidities)) > 1  # the HTS221's ±3.5 %RH, averaged over its response time
