"""The server's own life: a clean shutdown tells connected chargers (WebSocket close 1001, "going
away") and exits 0; a new transaction on a connector that still has an open one closes the older,
recorded as superseded (its StopTransaction never reached us)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.exceptions import ConnectionClosed

from ocpp_kit import Server, charger, now_iso, open_ws, run, transactions
from ocpp.v16 import call as call16


@pytest.fixture
def own_server(tmp_path):
    server = Server("sqlite", tmp_path / "data", None)
    server.start()
    yield server
    server.stop()


def test_shutdown_closes_charger_links_cleanly(own_server):
    async def scenario():
        ws = await open_ws(own_server, "FM-CAM-01", "1.6")
        await ws.send(json.dumps([2, "b", "BootNotification", {"chargePointVendor": "E2E", "chargePointModel": "Life"}]))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))[0] == 3
        code = await asyncio.to_thread(own_server.stop)
        assert code == 0, f"forecourt exited {code} on SIGTERM"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value

    run(scenario())


def test_a_new_start_on_a_busy_connector_closes_the_older_transaction(own_server):
    async def scenario():
        async with charger(own_server, "FM-CAM-02") as cp:
            first = await cp.req(call16.StartTransaction(connector_id=1, id_tag="DEMO-TAG-1", meter_start=100, timestamp=now_iso()))
            second = await cp.req(call16.StartTransaction(connector_id=1, id_tag="DEMO-TAG-1", meter_start=900, timestamp=now_iso(5)))
            assert first.transaction_id != second.transaction_id
            status, detail = await own_server.ahttp("GET", "/api/v1/chargers/FM-CAM-02")
            assert status == 200, detail
            by_id = {t["id"]: t for t in transactions(detail)}
            assert by_id[first.transaction_id]["status"] == "ghost_closed"
            assert by_id[first.transaction_id]["stop_reason"] == "SupersededByNewTransaction"
            assert by_id[second.transaction_id]["status"] == "active"

    run(scenario())
