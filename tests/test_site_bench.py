"""The fleet benchmark measures what it says: calls counted are the calls ServiceNow saw, and
the table's rows are the run's own figures. No timing is asserted here."""

from __future__ import annotations

from conftest import secret_json

from benchmarks import fleet
from benchmarks.rows import comparison_rows


def test_calls_per_site_event_are_the_calls_the_standin_answered(standin, password, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(secret_json(password))
    result = fleet.calls_per_event(3, str(secret), standin.url)
    table_calls = [r for r in standin.request_log if standin.is_table_path(r[1])]
    assert result["servicenow_calls"] == len(table_calls) > 0
    assert result["site_events"] == len(standin.incidents()) == 1
    # The seed's design: a secret fetch and a POST per breaching reading, counted in the run.
    assert result["seed_calls"] == 2 * result["breaching_readings"] > result["servicenow_calls"]


def test_the_fleet_rows_are_the_figures_of_one_run():
    report = {
        "meta": {"primary_server": "standin-process"},
        "results": {
            "fleet": {
                "calls": {
                    "50": {"calls_per_site_event": 10.0, "seed_calls": 10398},
                    "1000": {"calls_per_site_event": 12.0, "seed_calls": 200000},
                },
                "gateway": {"cpu_per_reading_us": 7.5, "peak_rss_kb": 20480},
                "simulate": {
                    "wall_seconds_per_simulated_hour": 40.0,
                    "cpu_seconds_per_simulated_hour": 35.0,
                },
            }
        },
    }
    rows = {row.figure: row for row in comparison_rows(report)}
    fifty = rows["site humid spell, 50 Pis: ServiceNow calls per site event"]
    assert (fifty.project, fifty.seed) == (10.0, 10398)
    assert fifty.verdict() == "≤ 12: pass"
    assert rows["site gateway, 1000 Pis at 5 s: peak RSS"].project == 20.0
    assert rows["simulate --fleet 1000 --fast: wall time per simulated hour"].project == 40.0
