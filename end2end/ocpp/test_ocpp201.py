"""OCPP 2.0.1 against Forecourt, with independent charging stations (the PyPI `ocpp` package).

Every module runs on SQLite and on PostgreSQL (see conftest.py). Demo data as in test_ocpp16.py.
EVSE n of a demo charger is its connector n (each EVSE has one connector, connectorId 1).

Charger use: FM-CAM-01 boot / heartbeat / authorize / the regular session (EVSE 1) / offline
replay (EVSE 2) / notifications; FM-CAM-02 remote start/stop (EVSE 1) and meter units (EVSE 2);
UP-ZUI-01 authorize and the server restart; UP-ZUI-02 refused tokens, reconnects and malformed
frames; fresh ids for auto-registration.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from ocpp.routing import after, on
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action

from ocpp_kit import (
    Charger201,
    assert_recent,
    charger,
    connector_status,
    eventually,
    handshake_status,
    meter_value_201,
    norm,
    now_iso,
    raw_charger,
    run,
    transactions,
    unique,
)

V = "2.0.1"


def txs_by_tag(detail: dict, tag: str) -> list[dict]:
    return [t for t in transactions(detail) if t.get("id_tag") == tag]


def one_tx(tag: str, status: str, meter_start: int | None = None, meter_stop: int | None = None):
    """Check: exactly one transaction for `tag`, in `status`, with the given meter readings."""

    def check(detail):
        mine = txs_by_tag(detail, tag)
        if len(mine) != 1 or mine[0].get("status") != status:
            return False
        if meter_start is not None and mine[0].get("meter_start_wh") != meter_start:
            return False
        if meter_stop is not None and mine[0].get("meter_stop_wh") != meter_stop:
            return False
        return True

    return check


def tx_event(event_type: str, seq_no: int, tx_id: str, trigger: str, *, charging_state: str | None = None,
             stopped_reason: str | None = None, remote_start_id: int | None = None, id_token: dict | None = None,
             evse: dict | None = None, meter: list | None = None, offline: bool | None = None,
             ts: str | None = None):
    info = {"transactionId": tx_id}
    if charging_state:
        info["chargingState"] = charging_state
    if stopped_reason:
        info["stoppedReason"] = stopped_reason
    if remote_start_id is not None:
        info["remoteStartId"] = remote_start_id
    return call201.TransactionEvent(
        event_type=event_type, timestamp=ts or now_iso(), trigger_reason=trigger, seq_no=seq_no,
        transaction_info=info, meter_value=meter, offline=offline, evse=evse, id_token=id_token,
    )


def token(value: str, kind: str = "ISO14443") -> dict:
    return {"idToken": value, "type": kind}


# ---------------------------------------------------------------------------------------------
# Boot, heartbeat, authorization
# ---------------------------------------------------------------------------------------------


def test_tc_b_01_cold_boot_charging_station(server):
    """Covers OCTT TC_B_01_CSMS (cold boot, Accepted), with a StatusNotification per connector."""

    async def scenario():
        async with charger(server, "FM-CAM-01", V, boot=False) as cp:
            res = await cp.boot()
            assert res.interval > 0
            assert_recent(res.current_time)
            for evse in (1, 2):
                await cp.status(evse, "Available")
            detail = await eventually(
                lambda: server.charger("FM-CAM-01"),
                lambda d: d.get("online") is True
                and norm(connector_status(d, 1)) == "available"
                and norm(connector_status(d, 2)) == "available",
                what="FM-CAM-01 online with connectors 1 and 2 Available",
            )
            assert norm(detail.get("ocpp_version")) in ("201", "ocpp201"), detail.get("ocpp_version")

            status, listing = await server.ahttp("GET", "/api/v1/chargers")
            assert status == 200 and isinstance(listing, list), listing
            mine = [c for c in listing if c.get("id") == "FM-CAM-01"]
            assert len(mine) == 1 and mine[0]["online"] is True, listing
            assert norm(mine[0]["ocpp_version"]) in ("201", "ocpp201")

    run(scenario())


def test_boot_with_other_reasons_is_accepted(server):
    async def scenario():
        for reason in ("RemoteReset", "FirmwareUpdate", "Watchdog"):
            async with charger(server, "FM-CAM-01", V, boot=False) as cp:
                res = await cp.boot(reason)
                assert res.interval > 0

    run(scenario())


def test_heartbeat_returns_current_time(server):
    async def scenario():
        async with charger(server, "FM-CAM-01", V) as cp:
            for _ in range(2):
                res = await cp.req(call201.Heartbeat())
                assert_recent(res.current_time)

    run(scenario())


@pytest.mark.parametrize(
    ("charger_id", "tag", "expected"),
    [
        ("FM-CAM-01", "DEMO-TAG-1", {"Accepted"}),
        ("FM-CAM-01", "BLOCKED-1", {"Blocked"}),
        ("FM-CAM-01", "EXPIRED-1", {"Expired"}),
        ("FM-CAM-01", "NEVER-SEEN-TAG-77", {"Accepted"}),  # free vend site
        ("UP-ZUI-01", "DEMO-TAG-1", {"Accepted"}),
        ("UP-ZUI-01", "BLOCKED-1", {"Blocked"}),
        ("UP-ZUI-01", "EXPIRED-1", {"Expired"}),
        # The contract says Invalid; 2.0.1 also has Unknown for exactly this case.
        ("UP-ZUI-01", "NEVER-SEEN-TAG-77", {"Invalid", "Unknown"}),
    ],
)
def test_authorize(server, charger_id, tag, expected):
    async def scenario():
        async with charger(server, charger_id, V) as cp:
            res = await cp.req(call201.Authorize(id_token=token(tag)))
            assert res.id_token_info["status"] in expected, f"{tag} at {charger_id}: {res.id_token_info}"

    run(scenario())


@pytest.mark.parametrize(
    ("charger_id", "tag", "expected"),
    [
        ("UP-ZUI-01", "demo-tag-1", "Accepted"),
        ("FM-CAM-01", "blocked-1", "Blocked"),  # a blocked card must not pass as "unknown, free vend"
        ("UP-ZUI-01", "Expired-1", "Expired"),
    ],
)
def test_id_tokens_are_case_insensitive(server, charger_id, tag, expected):
    """OCPP 2.0.1 IdTokenType.idToken: "IdToken is case insensitive" (beyond the written contract)."""

    async def scenario():
        async with charger(server, charger_id, V) as cp:
            res = await cp.req(call201.Authorize(id_token=token(tag)))
            assert res.id_token_info["status"] == expected, f"{tag} at {charger_id}: {res.id_token_info}"

    run(scenario())


def test_transaction_event_started_with_refused_token(server):
    """The CSMS answers a Started event carrying a blocked token with idTokenInfo Blocked."""
    tx_id = unique("E2E-BLK")

    async def scenario():
        async with charger(server, "UP-ZUI-02", V) as cp:
            res = await cp.req(tx_event("Started", 0, tx_id, "Authorized", charging_state="EVConnected",
                                        id_token=token("BLOCKED-1"), evse={"id": 1, "connectorId": 1},
                                        meter=[meter_value_201(now_iso(), 100, "Transaction.Begin", full=False)]))
            assert res.id_token_info is not None and res.id_token_info["status"] == "Blocked", res
            res = await cp.req(tx_event("Ended", 1, tx_id, "Deauthorized", stopped_reason="DeAuthorized",
                                        meter=[meter_value_201(now_iso(), 100, "Transaction.End", full=False)]))
            assert isinstance(res, result201.TransactionEvent)

    run(scenario())


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------


def test_transaction_events_started_updated_ended(server):
    """TransactionEvent Started / Updated / Ended with seqNo, a replayed seqNo and a gap (OCTT TC_E_* area)."""
    tag = unique("E2E")
    tx_id = unique("E2E-TX")

    async def scenario():
        async with charger(server, "FM-CAM-01", V) as cp:
            await cp.status(1, "Occupied")
            auth = await cp.req(call201.Authorize(id_token=token(tag)))
            assert auth.id_token_info["status"] == "Accepted"

            t0 = now_iso(-120)
            res = await cp.req(tx_event(
                "Started", 0, tx_id, "Authorized", charging_state="EVConnected", id_token=token(tag),
                evse={"id": 1, "connectorId": 1}, ts=t0, meter=[meter_value_201(t0, 2000, "Transaction.Begin")]))
            assert res.id_token_info is not None and res.id_token_info["status"] == "Accepted", res

            updated_1 = tx_event("Updated", 1, tx_id, "ChargingStateChanged", charging_state="Charging",
                                 meter=[meter_value_201(now_iso(-90), 3000)])
            for _ in range(2):  # the same seqNo twice: a replay, not a second event
                res = await cp.req(updated_1)
                assert isinstance(res, result201.TransactionEvent)

            row = (await eventually(lambda: server.charger("FM-CAM-01"),
                                    lambda d: one_tx(tag, "active", 2000)(d) and norm(connector_status(d, 1)) == "occupied",
                                    what=f"one active transaction for {tag} from 2000 Wh, connector 1 Occupied"))
            row = txs_by_tag(row, tag)[0]
            assert row["connector_no"] == 1
            assert row.get("meter_stop_wh") is None

            # seqNo 2 lost on the way: 3 follows 1.
            res = await cp.req(tx_event("Updated", 3, tx_id, "MeterValuePeriodic",
                                        meter=[meter_value_201(now_iso(-60), 6000, soc=70)]))
            assert isinstance(res, result201.TransactionEvent)
            res = await cp.req(tx_event("Updated", 4, tx_id, "ChargingStateChanged", charging_state="SuspendedEV",
                                        meter=[meter_value_201(now_iso(-30), 9500, power_w=(0, 0, 0),
                                                               current_a=(0, 0, 0), soc=80)]))
            assert isinstance(res, result201.TransactionEvent)
            res = await cp.req(tx_event(
                "Ended", 5, tx_id, "EVCommunicationLost", charging_state="Idle", stopped_reason="EVDisconnected",
                meter=[meter_value_201(now_iso(), 9500, "Transaction.End", soc=80)]))
            assert isinstance(res, result201.TransactionEvent)
            await cp.status(1, "Available")

            detail = await eventually(
                lambda: server.charger("FM-CAM-01"),
                lambda d: one_tx(tag, "completed", 2000, 9500)(d) and norm(connector_status(d, 1)) == "available",
                what=f"one completed transaction for {tag}, 2000 -> 9500 Wh, connector 1 Available")
            assert txs_by_tag(detail, tag)[0]["connector_no"] == 1

    run(scenario())


def test_offline_transaction_replayed_with_duplicates(server):
    """A station back online replays its queued events (offline=true), some of them twice."""
    tag = unique("OFF")
    tx_id = unique("E2E-OFF")

    async def scenario():
        async with charger(server, "FM-CAM-01", V) as cp:
            t0 = now_iso(-7200)
            events = [
                tx_event("Started", 0, tx_id, "CablePluggedIn", charging_state="EVConnected", offline=True,
                         evse={"id": 2, "connectorId": 1}, ts=t0,
                         meter=[meter_value_201(t0, 40000, "Transaction.Begin", full=False)]),
                tx_event("Updated", 1, tx_id, "Authorized", charging_state="Charging", offline=True,
                         id_token=token(tag), ts=now_iso(-7100)),
                tx_event("Updated", 2, tx_id, "MeterValuePeriodic", offline=True, ts=now_iso(-5000),
                         meter=[meter_value_201(now_iso(-5000), 45000)]),
                tx_event("Ended", 3, tx_id, "EVCommunicationLost", stopped_reason="EVDisconnected", offline=True,
                         ts=now_iso(-3600), meter=[meter_value_201(now_iso(-3600), 52000, "Transaction.End", full=False)]),
            ]
            for event in events:
                for _ in range(2):
                    res = await cp.req(event)
                    assert isinstance(res, result201.TransactionEvent)

            # An Ended event for a transaction whose start never arrived is acknowledged too.
            res = await cp.req(tx_event("Ended", 7, unique("E2E-LOST"), "EVCommunicationLost",
                                        stopped_reason="PowerLoss", offline=True, ts=now_iso(-60),
                                        evse={"id": 2, "connectorId": 1},
                                        meter=[meter_value_201(now_iso(-60), 52000, "Transaction.End", full=False)]))
            assert isinstance(res, result201.TransactionEvent)
            # A very late duplicate of the Started event does not reopen the transaction.
            res = await cp.req(events[0])
            assert isinstance(res, result201.TransactionEvent)
            hb = await cp.req(call201.Heartbeat())
            assert_recent(hb.current_time)

            detail = await eventually(lambda: server.charger("FM-CAM-01"), one_tx(tag, "completed", 40000, 52000),
                                      what=f"exactly one completed transaction for {tag}, 40000 -> 52000 Wh")
            assert txs_by_tag(detail, tag)[0]["connector_no"] == 2

    run(scenario())


def energy(value, context: str, unit: str | None, multiplier: int | None = None) -> list[dict]:
    sv = {"value": value, "context": context, "measurand": "Energy.Active.Import.Register"}
    if unit is not None:
        sv["unitOfMeasure"] = {"unit": unit}
        if multiplier is not None:
            sv["unitOfMeasure"]["multiplier"] = multiplier
    return [{"timestamp": now_iso(), "sampledValue": [sv]}]


@pytest.mark.parametrize(
    ("unit", "multiplier", "start", "stop", "start_wh", "stop_wh"),
    [
        ("kWh", None, 2.5, 7.25, 2500, 7250),
        ("Wh", 3, 3, 4.5, 3000, 4500),  # multiplier: a power of ten (OCPP 2.0.1 UnitOfMeasureType)
        ("kWh", -1, 25, 72, 2500, 7200),
        (None, None, 1234, 5678, 1234, 5678),  # no unitOfMeasure: Wh
    ],
    ids=["kWh", "Wh-multiplier-3", "kWh-multiplier-minus-1", "default-Wh"],
)
def test_energy_register_units_are_converted_to_wh(server, unit, multiplier, start, stop, start_wh, stop_wh):
    """meter_start_wh / meter_stop_wh in Wh whatever unit and multiplier the station reports in."""
    tag = unique("UNIT")
    tx_id = unique("E2E-UNIT")

    async def scenario():
        async with charger(server, "FM-CAM-02", V) as cp:
            await cp.req(tx_event("Started", 0, tx_id, "Authorized", charging_state="Charging", id_token=token(tag),
                                  evse={"id": 2, "connectorId": 1}, meter=energy(start, "Transaction.Begin", unit, multiplier)))
            await cp.req(tx_event("Ended", 1, tx_id, "StopAuthorized", stopped_reason="Local",
                                  meter=energy(stop, "Transaction.End", unit, multiplier)))
            await eventually(lambda: server.charger("FM-CAM-02"), one_tx(tag, "completed", start_wh, stop_wh),
                             what=f"{start} -> {stop} {unit} (multiplier {multiplier}) as {start_wh} -> {stop_wh} Wh")

    run(scenario())


class RemoteStation(Charger201):
    """Starts / stops a transaction when the CSMS asks (RequestStart/StopTransaction)."""

    METER_START = 300
    METER_STOP = 4300

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tx_id = unique("E2E-RS")
        self.tx_running = False
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.errors: list[BaseException] = []
        self.remote: list[tuple] = []
        self.start_token_status: str | None = None

    @on(Action.request_start_transaction)
    def on_request_start(self, id_token, remote_start_id, evse_id=None, **_):
        self.remote.append(("RequestStartTransaction", id_token, remote_start_id, evse_id))
        if evse_id == 2:
            return result201.RequestStartTransaction(status="Rejected")
        return result201.RequestStartTransaction(status="Accepted")

    @after(Action.request_start_transaction)
    async def after_request_start(self, id_token, remote_start_id, evse_id=None, **_):
        if evse_id == 2:
            return
        try:
            ts = now_iso()
            res = await self.req(tx_event(
                "Started", 0, self.tx_id, "RemoteStart", charging_state="EVConnected", remote_start_id=remote_start_id,
                id_token=id_token, evse={"id": evse_id or 1, "connectorId": 1}, ts=ts,
                meter=[meter_value_201(ts, self.METER_START, "Transaction.Begin", full=False)]))
            self.start_token_status = (res.id_token_info or {}).get("status")
            self.tx_running = True
            await self.req(tx_event("Updated", 1, self.tx_id, "ChargingStateChanged", charging_state="Charging",
                                    meter=[meter_value_201(now_iso(), 1300)]))
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.errors.append(err)
        finally:
            self.started.set()

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id, **_):
        self.remote.append(("RequestStopTransaction", transaction_id))
        ok = self.tx_running and transaction_id == self.tx_id
        return result201.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @after(Action.request_stop_transaction)
    async def after_request_stop(self, transaction_id, **_):
        if not (self.tx_running and transaction_id == self.tx_id):
            return
        try:
            await self.req(tx_event("Ended", 2, self.tx_id, "RemoteStop", charging_state="EVConnected",
                                    stopped_reason="Remote",
                                    meter=[meter_value_201(now_iso(), self.METER_STOP, "Transaction.End", full=False)]))
            self.tx_running = False
        except BaseException as err:  # noqa: BLE001
            self.errors.append(err)
        finally:
            self.stopped.set()


def test_tc_f_remote_start_and_stop_via_rest(server):
    """Covers OCTT TC_F_02_CSMS (remote start, remote start first) and TC_F_03_CSMS (remote stop)."""

    async def scenario():
        async with charger(server, "FM-CAM-02", V, cls=RemoteStation) as cp:
            await cp.status(1, "Available")
            status, body = await server.command("FM-CAM-02", "RequestStartTransaction", {
                "idToken": {"idToken": "DEMO-TAG-1", "type": "Central"}, "remoteStartId": 4711, "evseId": 1})
            assert status == 200, body
            assert body.get("status") == "answered" and body.get("response") == {"status": "Accepted"}, body
            assert ("RequestStartTransaction", {"id_token": "DEMO-TAG-1", "type": "Central"}, 4711, 1) in cp.remote

            await asyncio.wait_for(cp.started.wait(), 15)
            assert not cp.errors, cp.errors
            assert cp.start_token_status == "Accepted"

            def find(d):
                return [t for t in transactions(d) if t.get("id_tag") == "DEMO-TAG-1"
                        and t.get("meter_start_wh") == RemoteStation.METER_START]

            detail = await eventually(lambda: server.charger("FM-CAM-02"),
                                      lambda d: len(find(d)) == 1 and find(d)[0].get("status") == "active",
                                      what="the remotely started transaction active")
            assert find(detail)[0]["connector_no"] == 1

            status, body = await server.command("FM-CAM-02", "RequestStopTransaction", {"transactionId": cp.tx_id})
            assert status == 200, body
            assert body.get("status") == "answered" and body.get("response") == {"status": "Accepted"}, body
            await asyncio.wait_for(cp.stopped.wait(), 15)
            assert not cp.errors, cp.errors
            await eventually(lambda: server.charger("FM-CAM-02"),
                             lambda d: len(find(d)) == 1 and find(d)[0].get("status") == "completed"
                             and find(d)[0].get("meter_stop_wh") == RemoteStation.METER_STOP,
                             what="the remotely stopped transaction completed")

            # The station's refusal comes back as an answer.
            status, body = await server.command("FM-CAM-02", "RequestStartTransaction", {
                "idToken": {"idToken": "DEMO-TAG-1", "type": "Central"}, "remoteStartId": 4712, "evseId": 2})
            assert status == 200, body
            assert body.get("status") == "answered" and body.get("response") == {"status": "Rejected"}, body

    run(scenario())


def test_server_restart_mid_transaction(server):
    tx_id = unique("E2E-RST")

    async def before():
        async with charger(server, "UP-ZUI-01", V) as cp:
            t0 = now_iso(-300)
            res = await cp.req(tx_event("Started", 0, tx_id, "Authorized", charging_state="Charging",
                                        id_token=token("DEMO-TAG-1"), evse={"id": 1, "connectorId": 1}, ts=t0,
                                        meter=[meter_value_201(t0, 70000, "Transaction.Begin", full=False)]))
            assert res.id_token_info["status"] == "Accepted"
            await cp.req(tx_event("Updated", 1, tx_id, "MeterValuePeriodic", meter=[meter_value_201(now_iso(-200), 71000)]))

    def find(d):
        return [t for t in transactions(d) if t.get("id_tag") == "DEMO-TAG-1" and t.get("meter_start_wh") == 70000]

    run(before())
    server.restart()

    async def after_restart():
        detail = await server.acharger("UP-ZUI-01")
        assert detail["online"] is False, "nobody is connected to the restarted server yet"
        mine = find(detail)
        assert len(mine) == 1 and mine[0]["status"] == "active", f"after the restart: {mine}"
        # The station did not reboot: it reconnects and carries on, without a BootNotification.
        async with charger(server, "UP-ZUI-01", V, boot=False) as cp:
            await cp.req(tx_event("Updated", 2, tx_id, "MeterValuePeriodic", meter=[meter_value_201(now_iso(-100), 74000)]))
            await cp.req(tx_event("Ended", 3, tx_id, "StopAuthorized", stopped_reason="Local",
                                  id_token=token("DEMO-TAG-1"),
                                  meter=[meter_value_201(now_iso(), 76000, "Transaction.End", full=False)]))
            await eventually(lambda: server.charger("UP-ZUI-01"),
                             lambda d: len(find(d)) == 1 and find(d)[0].get("status") == "completed"
                             and find(d)[0].get("meter_stop_wh") == 76000,
                             what="the transaction completed 70000 -> 76000 Wh after the restart")

    run(after_restart())


# ---------------------------------------------------------------------------------------------
# Other messages from the station
# ---------------------------------------------------------------------------------------------


def test_reports_events_and_notifications_are_accepted(server):
    async def scenario():
        async with charger(server, "FM-CAM-01", V) as cp:
            now = now_iso()
            res = await cp.req(call201.NotifyReport(request_id=1, generated_at=now, seq_no=0, tbc=False, report_data=[{
                "component": {"name": "ChargingStation"},
                "variable": {"name": "Model"},
                "variableAttribute": [{"type": "Actual", "value": "E2E-AC-22", "mutability": "ReadOnly",
                                       "persistent": True, "constant": True}],
                "variableCharacteristics": {"dataType": "string", "supportsMonitoring": False},
            }]))
            assert isinstance(res, result201.NotifyReport)

            res = await cp.req(call201.NotifyEvent(generated_at=now, seq_no=0, tbc=False, event_data=[{
                "eventId": 1, "timestamp": now, "trigger": "Delta", "actualValue": "Faulted",
                "eventNotificationType": "HardWiredNotification",
                "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
                "variable": {"name": "AvailabilityState"},
            }]))
            assert isinstance(res, result201.NotifyEvent)

            res = await cp.req(call201.SecurityEventNotification(type="StartupOfTheDevice", timestamp=now,
                                                                 tech_info="e2e boot"))
            assert isinstance(res, result201.SecurityEventNotification)

            res = await cp.req(call201.NotifyEVChargingNeeds(evse_id=1, charging_needs={
                "requestedEnergyTransfer": "AC_three_phase",
                "departureTime": now_iso(3600),
                "acChargingParameters": {"energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 32,
                                         "evMaxVoltage": 400},
            }))
            assert res.status in ("Accepted", "Rejected", "Processing"), res

            for status in ("Downloading", "Downloaded", "Installing", "Installed"):
                res = await cp.req(call201.FirmwareStatusNotification(status=status, request_id=5))
                assert isinstance(res, result201.FirmwareStatusNotification)
            for status in ("Uploading", "Uploaded", "Idle"):
                res = await cp.req(call201.LogStatusNotification(status=status, request_id=6))
                assert isinstance(res, result201.LogStatusNotification)

            res = await cp.req(call201.MeterValues(evse_id=0, meter_value=[meter_value_201(now, 123456, soc=None)]))
            assert isinstance(res, result201.MeterValues)
            res = await cp.req(call201.MeterValues(evse_id=1, meter_value=[meter_value_201(now, 654, soc=None)]))
            assert isinstance(res, result201.MeterValues)

            hb = await cp.req(call201.Heartbeat())
            assert_recent(hb.current_time)

    run(scenario())


# ---------------------------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------------------------


def test_reconnect_replaces_previous_connection(server):
    async def scenario():
        async with charger(server, "UP-ZUI-02", V) as first:
            async with charger(server, "UP-ZUI-02", V) as second:
                try:
                    await asyncio.wait_for(first.ws.wait_closed(), 10)
                except asyncio.TimeoutError:
                    pytest.fail("the first connection was still open 10s after the second one booted")
                await second.req(call201.Heartbeat())
                await asyncio.sleep(1.0)
                detail = await server.acharger("UP-ZUI-02")
                assert detail["online"] is True, "closing the replaced connection must not mark the charger offline"
                request = {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"},
                                                "variable": {"name": "HeartbeatInterval"}}]}
                status, body = await server.command("UP-ZUI-02", "GetVariables", request)
                assert status == 200, body
                assert body["status"] == "answered"
                assert body["response"]["getVariableResult"][0]["attributeStatus"] == "UnknownVariable", body
                # Our own call, not the one the balancer makes at boot (SmartChargingCtrlr).
                asked = [d["get_variable_data"][0]["component"]["name"] for name, d in second.incoming if name == "GetVariables"]
                assert "OCPPCommCtrlr" in asked, second.incoming
        await eventually(lambda: server.charger("UP-ZUI-02"), lambda d: d.get("online") is False,
                         what="UP-ZUI-02 offline after its last connection closed")

    run(scenario())


# (name, frame maker, acceptable codes (None: any CALLERROR), acceptable message ids (None: any))
MALFORMED_201 = [
    ("not_json", lambda mid: "this is { not json", {"FormatViolation", "RpcFrameworkError"}, {"-1"}),
    ("truncated_json", lambda mid: f'[2,"{mid}","Heartbeat",{{', {"FormatViolation", "RpcFrameworkError"}, {"-1", "{mid}"}),
    ("unknown_action", lambda mid: json.dumps([2, mid, "FlyToTheMoon", {}]), {"NotImplemented"}, {"{mid}"}),
    ("missing_required_field", lambda mid: json.dumps([2, mid, "Authorize", {}]),
     {"OccurrenceConstraintViolation"}, {"{mid}"}),
    ("wrong_type", lambda mid: json.dumps([2, mid, "Authorize", {"idToken": "DEMO-TAG-1"}]),
     {"TypeConstraintViolation"}, {"{mid}"}),
    ("enum_out_of_set", lambda mid: json.dumps([2, mid, "StatusNotification", {
        "timestamp": now_iso(), "connectorStatus": "Exploded", "evseId": 1, "connectorId": 1}]),
     {"PropertyConstraintViolation"}, {"{mid}"}),
    ("unknown_message_type", lambda mid: json.dumps([7, mid, {}]), {"MessageTypeNotSupported"}, {"{mid}"}),
    ("json_but_not_an_array", lambda mid: json.dumps({"hello": "world"}), None, None),
    ("call_without_payload", lambda mid: json.dumps([2, mid, "Heartbeat"]), None, None),
]


@pytest.mark.parametrize(("name", "make", "codes", "ids"), MALFORMED_201, ids=[m[0] for m in MALFORMED_201])
def test_malformed_frame_gets_call_error_and_connection_survives(server, name, make, codes, ids):
    async def scenario():
        async with raw_charger(server, "UP-ZUI-02", V) as raw:
            boot = await raw.call("BootNotification", {
                "reason": "PowerUp", "chargingStation": {"model": "Raw", "vendorName": "E2E"}})
            assert boot[0] == 3 and boot[2]["status"] == "Accepted", boot
            for attempt in range(2):
                mid = f"bad-{name}-{attempt}"
                await raw.send(make(mid))
                answer = await raw.next_answer()
                assert answer[0] == 4, f"{name}: expected a CALLERROR, got {answer}"
                assert len(answer) == 5, f"{name}: a CALLERROR has 5 elements: {answer}"
                assert isinstance(answer[2], str) and isinstance(answer[3], str) and isinstance(answer[4], dict), answer
                if codes is not None:
                    assert answer[2] in codes, f"{name}: error code {answer[2]!r}, expected one of {sorted(codes)}"
                if ids is not None:
                    allowed = {i.format(mid=mid) for i in ids}
                    assert answer[1] in allowed, f"{name}: CALLERROR id {answer[1]!r}, expected {sorted(allowed)}"
                await raw.heartbeat_ok()

    run(scenario())


@pytest.mark.parametrize("offered", [None, ["ocpp1.2"], ["mqtt", "chat"]], ids=["none", "ocpp1.2", "others"])
def test_handshake_without_supported_subprotocol_is_refused(server, offered):
    status = run(handshake_status(server, "FM-CAM-01", "demo-charger-pass", offered))
    assert status in (400, 426), f"handshake offering {offered} answered HTTP {status}"


@pytest.mark.parametrize("password", ["wrong-password-123", None], ids=["wrong", "missing"])
def test_wrong_or_missing_password_is_401(server, password):
    """Security profile 1 (basic auth); OCTT's TC_A_* security cases are in this area."""
    status = run(handshake_status(server, "UP-ZUI-01", password, ["ocpp2.0.1"]))
    assert status == 401, f"handshake with password {password!r} answered HTTP {status}"


def test_auto_registration_trust_on_first_use(server):
    cp_id = unique("E2E201-AUTO")
    password = "first-use-pass-201"

    async def scenario():
        async with charger(server, cp_id, V, password=password) as cp:
            await cp.status(1, "Available")
            detail = await server.acharger(cp_id)
            assert detail["id"] == cp_id and detail["online"] is True
            assert norm(detail["ocpp_version"]) in ("201", "ocpp201")
        async with charger(server, cp_id, V, password=password, boot=False) as cp:
            await cp.req(call201.Heartbeat())
        assert await handshake_status(server, cp_id, "another-password-456", ["ocpp2.0.1"]) == 401

    run(scenario())


def _lengths_cases():
    """(action, payload builder) for string lengths the 2.0.1 schemas bound: a field at its maximum is
    accepted, one character more is a PropertyConstraintViolation."""
    ts = "2026-11-24T10:00:00Z"
    return [
        ("BootNotification", 20, lambda s: {"reason": "PowerUp", "chargingStation": {"model": s, "vendorName": "V"}}),
        ("TransactionEvent", 36, lambda s: {"eventType": "Started", "timestamp": ts, "triggerReason": "Authorized", "seqNo": 0,
                                            "transactionInfo": {"transactionId": s}, "evse": {"id": 1, "connectorId": 1}}),
        ("SecurityEventNotification", 255, lambda s: {"type": "FirmwareUpdated", "timestamp": ts, "techInfo": s}),
        ("MeterValues", 20, lambda s: {"evseId": 1, "meterValue": [{"timestamp": ts, "sampledValue": [
            {"value": 1.0}, {"value": 2.0, "unitOfMeasure": {"unit": s}}]}]}),
        ("NotifyEvent", 50, lambda s: {"generatedAt": ts, "seqNo": 0, "eventData": [{
            "eventId": 1, "timestamp": ts, "trigger": "Alerting", "actualValue": "x", "eventNotificationType": "HardWiredNotification",
            "component": {"name": s}, "variable": {"name": "V"}}]}),
        ("NotifyReport", 2500, lambda s: {"requestId": 1, "generatedAt": ts, "seqNo": 0, "reportData": [{
            "component": {"name": "C"}, "variable": {"name": "V"}, "variableAttribute": [{"value": "1"}, {"value": s}]}]}),
    ]


@pytest.mark.parametrize("case", _lengths_cases(), ids=[c[0] for c in _lengths_cases()])
def test_string_lengths_beyond_the_schema_are_refused_and_the_link_stays_up(server, case):
    action, max_len, payload = case

    async def scenario():
        async with raw_charger(server, unique("E2E201-LEN"), "2.0.1", password="length-pass-1234") as cp:
            frame = await cp.call(action, payload("x" * (max_len + 1)))
            assert frame[0] == 4 and frame[2] == "PropertyConstraintViolation", frame
            assert "longer than" in frame[3], frame
            frame = await cp.call(action, payload("y" * max_len))
            assert frame[0] == 3, f"{action} with a {max_len}-character value was refused: {frame}"

    run(scenario())
