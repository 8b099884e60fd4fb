"""A short soak (the long one is a benchmark: soak.py, docs/benchmarks.md): twenty honest chargers
beside one that sends huge frames, floods, invents connectors and sends garbage. Nothing honest is
lost and the misbehaving charger is contained; how long honest calls wait is measured on demand,
not asserted here."""

from __future__ import annotations

import asyncio

import pytest

from ocpp_kit import Server
from soak import soak, stored_meter_values


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server("sqlite", tmp_path_factory.mktemp("soak") / "data", None)
    srv.start()
    yield srv
    srv.stop()


def test_a_misbehaving_charger_costs_the_honest_ones_nothing(server):
    result = asyncio.run(soak(server, honest=20, seconds=12, misbehave=True, prefix="SOAK-"))
    assert result["errors"] == [], result["errors"][:5]
    assert result["answered"] == result["sent"] > 0, result
    assert stored_meter_values(server.data_dir, "SOAK-0") == result["meter_values_sent"], result

    rogue = result["rogue"]
    assert rogue["huge_frames_closed"] >= 1, rogue
    assert rogue["new_connectors_refused"] >= 10 and rogue["new_connectors_refused"] % 10 == 0, rogue
    # The flood is paced, not dropped: every CALL of it is answered.
    assert rogue["flood_sent"] >= 200 and rogue["flood_answered"] == rogue["flood_sent"], rogue
    status, detail = server.http("GET", "/api/v1/chargers/SOAK-BAD")
    assert status == 200, detail
    assert all(c["connector_no"] <= 16 for c in detail["connectors"]), detail["connectors"]
    assert server.http("GET", "/readyz", token=None)[0] == 200
