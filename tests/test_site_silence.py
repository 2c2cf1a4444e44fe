"""A site gateway notices silent devices: one incident per silent group, over real HTTP."""

from __future__ import annotations

from agent.schema import READING_SCHEMA
from agent.topology import ANOMALY_FUNCTION_ID
from functions import anomaly_function

PERIOD = 5.0
DEVICES = ["pi-{}".format(i) for i in range(9)]


def gateway(standin, core, clock, tmp_path, **variables):
    return anomaly_function.create_app(
        environ={
            "snowUrl": standin.url,
            "stateDir": str(tmp_path / "state"),
            "site": "lab",
            "siteDevices": ",".join(DEVICES),
            **variables,
        },
        runtime=core.runtime_for(ANOMALY_FUNCTION_ID),
        clock=clock,
    )


class Fleet:
    """Devices reading every ``period`` seconds of the gateway's virtual time."""

    def __init__(self, service, clock, period=PERIOD):
        self.service, self.clock, self.period = service, clock, period
        self.seq = {}

    def run(self, seconds, devices, period=None):
        steps = int(seconds / (period or self.period))
        for _ in range(steps):
            for device in devices:
                self.read(device)
            self.clock.advance(period or self.period)
            self.service.pump()

    def read(self, device):
        seq = self.seq[device] = self.seq.get(device, -1) + 1
        message = {
            "schema": READING_SCHEMA,
            "device": device,
            "seq": seq,
            "ts": self.clock.time(),
            "temperature": 22.0,
            "humidity": 40.0,
            "pressure": 1010.0,
        }
        assert self.service.handle(message, "IoTBlog/readings") is not False


def test_devices_that_go_silent_together_are_one_incident_resolved_when_they_report(
    standin, core, clock, tmp_path
):
    service = gateway(standin, core, clock, tmp_path)
    fleet = Fleet(service, clock)
    fleet.run(60, DEVICES)
    assert standin.incidents() == []
    silent, alive = DEVICES[:3], DEVICES[3:]  # a switch fails
    fleet.run(40, alive)
    assert standin.incidents() == []  # 40 s < 3 periods + 30 s
    fleet.run(60, alive)  # silence found, then the group's 30 s wait
    (incident,) = standin.incidents()
    assert incident["short_description"] == "No readings from 3 devices at site lab"
    for device in silent:
        assert "{}: no readings since".format(device) in incident["description"]
    for device in alive:
        assert device + ":" not in incident["description"]
    fleet.run(20, DEVICES)  # the switch is back
    (incident,) = standin.incidents()
    assert incident["state"] == "6"
    notes = [e["value"] for e in incident["_journal"] if e["field"] == "work_notes"]
    assert "pi-0, pi-1, pi-2" in notes[-1]
    fleet.run(300, DEVICES)
    assert len(standin.incidents()) == 1


def test_a_gateway_restart_makes_no_device_look_silent(standin, core, clock, tmp_path):
    service = gateway(standin, core, clock, tmp_path)
    fleet = Fleet(service, clock)
    fleet.run(60, DEVICES)
    service.stop()
    service.close()
    clock.advance(3600)  # the gateway was down an hour; the devices kept reading
    again = gateway(standin, core, clock, tmp_path)
    fleet.service = again
    fleet.run(600, DEVICES)
    assert standin.incidents() == []  # 0 false silences
    # A device that really stops after the restart is noticed, from the restart on.
    fleet.run(120, DEVICES[1:])
    (incident,) = standin.incidents()
    assert incident["short_description"] == "No readings from 1 device at site lab (pi-0)"


def test_devices_are_known_from_their_first_reading_and_the_deployment(
    standin, core, clock, tmp_path
):
    service = gateway(
        standin, core, clock, tmp_path, siteDevices="pi-planned", groupWaitSeconds="60"
    )
    fleet = Fleet(service, clock)
    fleet.run(30, ["pi-new"])
    fleet.run(120, [])
    (incident,) = standin.incidents()
    assert "pi-new: no readings since" in incident["description"]
    assert "pi-planned: no readings since the gateway's start" in incident["description"]


def test_a_device_with_a_long_period_is_not_silent_between_its_readings(
    standin, core, clock, tmp_path
):
    service = gateway(standin, core, clock, tmp_path, siteDevices="")
    fleet = Fleet(service, clock)
    fleet.run(600, ["pi-slow"], period=60.0)  # 3 periods + 30 s = 210 s
    assert standin.incidents() == []
    fleet.run(300, [], period=60.0)
    assert len(standin.incidents()) == 1


def test_a_device_learned_from_its_readings_is_still_watched_after_a_restart(
    standin, core, clock, tmp_path
):
    service = gateway(standin, core, clock, tmp_path, siteDevices="")
    fleet = Fleet(service, clock)
    fleet.run(30, ["pi-a", "pi-b"])
    service.stop()
    service.close()
    again = gateway(standin, core, clock, tmp_path, siteDevices="")
    fleet.service = again
    fleet.run(120, ["pi-a"])  # pi-b died while the gateway was down
    (incident,) = standin.incidents()
    assert incident["short_description"] == "No readings from 1 device at site lab (pi-b)"


def test_a_bad_reading_is_refused_with_a_reason(standin, core, clock, tmp_path, caplog):
    service = gateway(standin, core, clock, tmp_path)
    bad = {"schema": READING_SCHEMA, "device": "pi-0", "seq": 0, "ts": "noon"}
    assert service.handle(bad, "IoTBlog/readings") is False
    assert service.counts["rejected"] == 1
    assert "ts must be a number" in caplog.text
