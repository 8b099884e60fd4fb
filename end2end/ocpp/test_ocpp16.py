"""OCPP 1.6J against Forecourt, with independent charge points (the PyPI `ocpp` package).

Every module runs on SQLite and on PostgreSQL (see conftest.py). Demo data the tests rely on:
FM-CAM-01/02 (FreshMart Camden: free vend, auto-register), UP-ZUI-01/02 (UrbanPod Zuidas: neither),
tags DEMO-TAG-1 (Accepted), BLOCKED-1 (Blocked), EXPIRED-1 (Expired).

Charger use, so tests in this module do not disturb each other: FM-CAM-01 boot / heartbeat /
authorize / the regular session (connector 1) / offline replay (connector 2); FM-CAM-02 remote
start/stop; UP-ZUI-01 authorize and the server restart; UP-ZUI-02 refused tags, reconnects and
malformed frames; fresh ids for auto-registration.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action

from ocpp_kit import (
    Charger16,
    assert_recent,
    charger,
    connector_status,
    eventually,
    handshake_status,
    meter_value_16,
    norm,
    now_iso,
    raw_charger,
    run,
    transactions,
    unique,
)


def tx_by_id(detail: dict, tx_id: int) -> dict | None:
    for tx in transactions(detail):
        if str(tx.get("id")) == str(tx_id):
            return tx
    return None


def completed(tx_id: int, meter_start: int, meter_stop: int):
    def check(detail):
        tx = tx_by_id(detail, tx_id)
        return (
            tx is not None
            and tx.get("status") == "completed"
            and tx.get("meter_start_wh") == meter_start
            and tx.get("meter_stop_wh") == meter_stop
        )

    return check


# ---------------------------------------------------------------------------------------------
# Boot, heartbeat, authorization
# ---------------------------------------------------------------------------------------------


def test_tc_001_cold_boot_charging_station(server):
    """Covers OCTT TC_001_CSMS (cold boot): Accepted, an interval, the time; status per connector."""

    async def scenario():
        async with charger(server, "FM-CAM-01", boot=False) as cp:
            res = await cp.boot()
            assert res.interval > 0
            assert_recent(res.current_time)
            for connector in (0, 1, 2):
                await cp.status(connector, "Available")

            detail = await eventually(
                lambda: server.charger("FM-CAM-01"),
                lambda d: d.get("online") is True
                and norm(connector_status(d, 1)) == "available"
                and norm(connector_status(d, 2)) == "available",
                what="FM-CAM-01 online with connectors 1 and 2 Available",
            )
            assert detail["id"] == "FM-CAM-01"
            assert norm(detail.get("ocpp_version")) in ("16", "ocpp16"), detail.get("ocpp_version")

            status, listing = await server.ahttp("GET", "/api/v1/chargers")
            assert status == 200, listing
            assert isinstance(listing, list), listing
            mine = [c for c in listing if c.get("id") == "FM-CAM-01"]
            assert len(mine) == 1, listing
            assert mine[0]["online"] is True
            assert norm(mine[0]["ocpp_version"]) in ("16", "ocpp16")

    run(scenario())


def test_heartbeat_returns_current_time(server):
    async def scenario():
        async with charger(server, "FM-CAM-01") as cp:
            for _ in range(2):
                res = await cp.req(call16.Heartbeat())
                assert isinstance(res, result16.Heartbeat)
                assert_recent(res.current_time)

    run(scenario())


@pytest.mark.parametrize(
    ("charger_id", "tag", "expected"),
    [
        ("FM-CAM-01", "DEMO-TAG-1", "Accepted"),
        ("FM-CAM-01", "BLOCKED-1", "Blocked"),
        ("FM-CAM-01", "EXPIRED-1", "Expired"),
        ("FM-CAM-01", "NEVER-SEEN-TAG-77", "Accepted"),  # free vend site
        ("UP-ZUI-01", "DEMO-TAG-1", "Accepted"),
        ("UP-ZUI-01", "BLOCKED-1", "Blocked"),
        ("UP-ZUI-01", "EXPIRED-1", "Expired"),
        ("UP-ZUI-01", "NEVER-SEEN-TAG-77", "Invalid"),  # no free vend
    ],
)
def test_authorize(server, charger_id, tag, expected):
    async def scenario():
        async with charger(server, charger_id) as cp:
            res = await cp.req(call16.Authorize(id_tag=tag))
            assert res.id_tag_info["status"] == expected, f"{tag} at {charger_id}: {res.id_tag_info}"

    run(scenario())


@pytest.mark.parametrize(
    ("charger_id", "tag", "expected"),
    [
        ("UP-ZUI-01", "demo-tag-1", "Accepted"),
        ("FM-CAM-01", "blocked-1", "Blocked"),  # a blocked card must not pass as "unknown, free vend"
        ("UP-ZUI-01", "Expired-1", "Expired"),
    ],
)
def test_id_tags_are_case_insensitive(server, charger_id, tag, expected):
    """OCPP 1.6 IdToken is a CiString20Type: compared case-insensitively (beyond the written contract)."""

    async def scenario():
        async with charger(server, charger_id) as cp:
            res = await cp.req(call16.Authorize(id_tag=tag))
            assert res.id_tag_info["status"] == expected, f"{tag} at {charger_id}: {res.id_tag_info}"

    run(scenario())


def test_start_transaction_with_refused_tags_reports_their_status(server):
    """A StartTransaction is always answered with a transactionId; idTagInfo says whether to go on."""

    async def scenario():
        async with charger(server, "UP-ZUI-02") as cp:
            for tag, expected, meter in (("BLOCKED-1", "Blocked", 100), ("NEVER-SEEN-TAG-88", "Invalid", 200)):
                res = await cp.req(
                    call16.StartTransaction(connector_id=1, id_tag=tag, meter_start=meter, timestamp=now_iso())
                )
                assert res.id_tag_info["status"] == expected, f"{tag}: {res}"
                assert isinstance(res.transaction_id, int)
                stop = await cp.req(
                    call16.StopTransaction(
                        meter_stop=meter, timestamp=now_iso(), transaction_id=res.transaction_id, reason="DeAuthorized"
                    )
                )
                assert isinstance(stop, result16.StopTransaction)

    run(scenario())


# ---------------------------------------------------------------------------------------------
# Charging sessions
# ---------------------------------------------------------------------------------------------


def test_tc_003_regular_charging_session_plugin_first(server):
    """Covers OCTT TC_003_CSMS: plug in, authorize, start, meter values, stop, unplug; checked via REST."""
    tag = unique("E2E")

    async def scenario():
        async with charger(server, "FM-CAM-01") as cp:
            await cp.status(1, "Available")
            await cp.status(1, "Preparing")
            auth = await cp.req(call16.Authorize(id_tag=tag))
            assert auth.id_tag_info["status"] == "Accepted"  # unknown tag, free vend site

            t0 = now_iso(-60)
            start = await cp.req(call16.StartTransaction(connector_id=1, id_tag=tag, meter_start=1000, timestamp=t0))
            assert start.id_tag_info["status"] == "Accepted"
            assert isinstance(start.transaction_id, int) and start.transaction_id > 0
            tx = start.transaction_id
            await cp.req(call16.MeterValues(connector_id=1, transaction_id=tx,
                                            meter_value=[meter_value_16(t0, 1000, "Transaction.Begin")]))
            await cp.status(1, "Charging")

            active = await eventually(
                lambda: server.charger("FM-CAM-01"),
                lambda d: (tx_by_id(d, tx) or {}).get("status") == "active"
                and norm(connector_status(d, 1)) == "charging",
                what=f"transaction {tx} active and connector 1 Charging",
            )
            row = tx_by_id(active, tx)
            assert row["connector_no"] == 1
            assert row["id_tag"] == tag
            assert row["meter_start_wh"] == 1000
            assert row.get("meter_stop_wh") is None

            for i, energy in enumerate((4000, 8000)):
                res = await cp.req(call16.MeterValues(
                    connector_id=1, transaction_id=tx,
                    meter_value=[meter_value_16(now_iso(-40 + 10 * i), energy, soc=50 + 10 * i)]))
                assert isinstance(res, result16.MeterValues)
            await cp.status(1, "SuspendedEV")
            await cp.req(call16.MeterValues(connector_id=1, transaction_id=tx,
                                            meter_value=[meter_value_16(now_iso(-5), 11500, power_w=(0, 0, 0),
                                                                        current_a=(0, 0, 0), soc=80)]))

            t_end = now_iso()
            stop = await cp.req(call16.StopTransaction(
                meter_stop=11500, timestamp=t_end, transaction_id=tx, reason="EVDisconnected", id_tag=tag,
                transaction_data=[
                    meter_value_16(t0, 1000, "Transaction.Begin"),
                    meter_value_16(now_iso(-30), 6000),
                    meter_value_16(t_end, 11500, "Transaction.End", soc=80),
                ],
            ))
            if stop.id_tag_info is not None:
                assert stop.id_tag_info["status"] == "Accepted", stop
            await cp.status(1, "Finishing")
            await cp.status(1, "Available")

            done = await eventually(
                lambda: server.charger("FM-CAM-01"),
                lambda d: completed(tx, 1000, 11500)(d) and norm(connector_status(d, 1)) == "available",
                what=f"transaction {tx} completed 1000 -> 11500 Wh, connector 1 Available",
            )
            row = tx_by_id(done, tx)
            assert row["id_tag"] == tag and row["connector_no"] == 1
            assert [t for t in transactions(done) if t.get("id_tag") == tag] == [row], "one transaction per session"

    run(scenario())


def test_notifications_and_data_transfer(server):
    async def scenario():
        async with charger(server, "FM-CAM-01") as cp:
            res = await cp.req(call16.DataTransfer(vendor_id="com.example.nobody", message_id="Ping", data="{}"))
            assert res.status == "UnknownVendorId", res
            for status in ("Uploading", "Uploaded", "Idle"):
                res = await cp.req(call16.DiagnosticsStatusNotification(status=status))
                assert isinstance(res, result16.DiagnosticsStatusNotification)
            for status in ("Downloading", "Downloaded", "Installing", "Installed", "Idle"):
                res = await cp.req(call16.FirmwareStatusNotification(status=status))
                assert isinstance(res, result16.FirmwareStatusNotification)
            # Meter values outside any transaction (the main meter, connector 0).
            res = await cp.req(call16.MeterValues(connector_id=0, meter_value=[meter_value_16(now_iso(), 123456, soc=None)]))
            assert isinstance(res, result16.MeterValues)
            # Still alive and well.
            hb = await cp.req(call16.Heartbeat())
            assert_recent(hb.current_time)

    run(scenario())


class RemoteCharger16(Charger16):
    """Starts / stops a transaction when the server asks, the way a real charge point does."""

    METER_START = 300
    METER_STOP = 2300

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tx_id: int | None = None
        self.start_tag_status: str | None = None
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.errors: list[BaseException] = []
        self.remote: list[tuple] = []

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag, connector_id=None, **_):
        self.remote.append(("RemoteStartTransaction", id_tag, connector_id))
        if connector_id == 2:  # connector 2 is "out of order" in this story
            return result16.RemoteStartTransaction(status="Rejected")
        return result16.RemoteStartTransaction(status="Accepted")

    @after(Action.remote_start_transaction)
    async def after_remote_start(self, id_tag, connector_id=None, **_):
        if connector_id == 2:
            return
        try:
            res = await self.req(call16.StartTransaction(
                connector_id=connector_id or 1, id_tag=id_tag, meter_start=self.METER_START, timestamp=now_iso()))
            self.tx_id = res.transaction_id
            self.start_tag_status = res.id_tag_info["status"]
            await self.status(connector_id or 1, "Charging")
            await self.req(call16.MeterValues(connector_id=connector_id or 1, transaction_id=self.tx_id,
                                              meter_value=[meter_value_16(now_iso(), 1300)]))
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.errors.append(err)
        finally:
            self.started.set()

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id, **_):
        self.remote.append(("RemoteStopTransaction", transaction_id))
        ok = self.tx_id is not None and transaction_id == self.tx_id
        return result16.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @after(Action.remote_stop_transaction)
    async def after_remote_stop(self, transaction_id, **_):
        if transaction_id != self.tx_id:
            return
        try:
            await self.req(call16.StopTransaction(
                meter_stop=self.METER_STOP, timestamp=now_iso(), transaction_id=transaction_id, reason="Remote"))
            await self.status(1, "Finishing")
        except BaseException as err:  # noqa: BLE001
            self.errors.append(err)
        finally:
            self.stopped.set()


def test_tc_010_remote_start_and_tc_012_remote_stop_via_rest(server):
    """Covers OCTT TC_010_CSMS (remote start, cable plugged in first) and TC_012_CSMS (remote stop)."""

    async def scenario():
        async with charger(server, "FM-CAM-02", cls=RemoteCharger16) as cp:
            await cp.status(1, "Preparing")  # cable plugged in first

            status, body = await server.command("FM-CAM-02", "RemoteStartTransaction",
                                                {"connectorId": 1, "idTag": "DEMO-TAG-1"})
            assert status == 200, body
            assert body == {"status": "answered", "response": {"status": "Accepted"}} or (
                body.get("status") == "answered" and body.get("response") == {"status": "Accepted"}), body
            assert ("RemoteStartTransaction", "DEMO-TAG-1", 1) in cp.remote

            await asyncio.wait_for(cp.started.wait(), 15)
            assert not cp.errors, cp.errors
            assert cp.start_tag_status == "Accepted"
            tx = cp.tx_id
            assert isinstance(tx, int) and tx > 0

            row = tx_by_id(await eventually(
                lambda: server.charger("FM-CAM-02"),
                lambda d: (tx_by_id(d, tx) or {}).get("status") == "active",
                what=f"remotely started transaction {tx} active"), tx)
            assert row["connector_no"] == 1 and row["id_tag"] == "DEMO-TAG-1"
            assert row["meter_start_wh"] == RemoteCharger16.METER_START

            status, body = await server.command("FM-CAM-02", "RemoteStopTransaction", {"transactionId": tx})
            assert status == 200, body
            assert body.get("status") == "answered" and body.get("response") == {"status": "Accepted"}, body
            await asyncio.wait_for(cp.stopped.wait(), 15)
            assert not cp.errors, cp.errors

            await eventually(lambda: server.charger("FM-CAM-02"),
                             completed(tx, RemoteCharger16.METER_START, RemoteCharger16.METER_STOP),
                             what=f"remotely stopped transaction {tx} completed")

            # The charger's refusal is passed through as an answer, not an error.
            status, body = await server.command("FM-CAM-02", "RemoteStartTransaction",
                                                {"connectorId": 2, "idTag": "DEMO-TAG-1"})
            assert status == 200, body
            assert body.get("status") == "answered" and body.get("response") == {"status": "Rejected"}, body

    run(scenario())


def test_offline_replay_with_duplicates_and_unknown_stops(server):
    """A charge point back from an offline spell replays its queue, duplicates included."""
    tag = unique("OFF")

    async def scenario():
        async with charger(server, "FM-CAM-01") as cp:
            t0 = now_iso(-3600)
            first = await cp.req(call16.StartTransaction(connector_id=2, id_tag=tag, meter_start=5000, timestamp=t0))
            again = await cp.req(call16.StartTransaction(connector_id=2, id_tag=tag, meter_start=5000, timestamp=t0))
            assert first.transaction_id > 0
            assert again.transaction_id == first.transaction_id, "a replayed StartTransaction must not open a second transaction"
            assert again.id_tag_info["status"] == first.id_tag_info["status"] == "Accepted"
            tx = first.transaction_id

            sample = meter_value_16(now_iso(-1800), 6000)
            for _ in range(2):
                res = await cp.req(call16.MeterValues(connector_id=2, transaction_id=tx, meter_value=[sample]))
                assert isinstance(res, result16.MeterValues)

            stop_msg = call16.StopTransaction(
                meter_stop=7000, timestamp=now_iso(-600), transaction_id=tx, reason="Local", id_tag=tag,
                transaction_data=[meter_value_16(now_iso(-600), 7000, "Transaction.End")])
            for _ in range(2):
                stop = await cp.req(stop_msg)
                if stop.id_tag_info is not None:
                    assert stop.id_tag_info["status"] == "Accepted", stop

            # Stops for transactions the server never saw must be acknowledged, or the charge point
            # would retry them for ever.
            for unknown, id_tag in ((987654, "DEMO-TAG-1"), (-1, None), (0, None)):
                stop = await cp.req(call16.StopTransaction(
                    meter_stop=42, timestamp=now_iso(-300), transaction_id=unknown, reason="PowerLoss", id_tag=id_tag))
                if stop.id_tag_info is not None:
                    assert stop.id_tag_info["status"] == "Accepted", (unknown, stop)

            # Meter values for a transaction the server never saw are acknowledged as well.
            res = await cp.req(call16.MeterValues(connector_id=2, transaction_id=987655,
                                                  meter_value=[meter_value_16(now_iso(-200), 43)]))
            assert isinstance(res, result16.MeterValues)

            # A very late duplicate of the start (after the stop) neither opens nor reopens anything.
            late = await cp.req(call16.StartTransaction(connector_id=2, id_tag=tag, meter_start=5000, timestamp=t0))
            assert late.transaction_id == tx, "a late replayed StartTransaction must map to the same transaction"

            hb = await cp.req(call16.Heartbeat())
            assert_recent(hb.current_time)

            detail = await eventually(lambda: server.charger("FM-CAM-01"), completed(tx, 5000, 7000),
                                      what=f"replayed transaction {tx} completed 5000 -> 7000 Wh")
            mine = [t for t in transactions(detail) if t.get("id_tag") == tag]
            assert len(mine) == 1, f"duplicates created extra transactions: {mine}"
            assert mine[0]["connector_no"] == 2

    run(scenario())


def test_concurrent_sessions_on_several_chargers(server):
    """Five chargers (auto-registered) charge at the same time; nothing gets mixed up."""
    ids = [unique(f"E2E16-CONC{i}") for i in range(5)]

    async def one(i: int, cp_id: str):
        async with charger(server, cp_id, password=f"concurrent-pass-{i}") as cp:
            await cp.status(1, "Preparing")
            start = await cp.req(call16.StartTransaction(connector_id=1, id_tag=f"CONC-TAG-{i}",
                                                         meter_start=1000 * i, timestamp=now_iso(-30)))
            for k in range(3):
                await cp.req(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                                                meter_value=[meter_value_16(now_iso(-20 + k), 1000 * i + 100 * (k + 1))]))
                await cp.req(call16.Heartbeat())
            await cp.req(call16.StopTransaction(meter_stop=1000 * i + 500, timestamp=now_iso(),
                                                transaction_id=start.transaction_id, reason="Local"))
            return start.transaction_id

    async def scenario():
        tx_ids = await asyncio.gather(*(one(i, cp_id) for i, cp_id in enumerate(ids)))
        assert len(set(tx_ids)) == len(tx_ids), f"transaction ids handed out twice: {tx_ids}"
        for i, (cp_id, tx) in enumerate(zip(ids, tx_ids)):
            detail = await eventually(lambda cp_id=cp_id: server.charger(cp_id), completed(tx, 1000 * i, 1000 * i + 500),
                                      what=f"{cp_id}'s transaction {tx} completed")
            row = tx_by_id(detail, tx)
            assert row["id_tag"] == f"CONC-TAG-{i}" and row["connector_no"] == 1, row
            assert len(transactions(detail)) == 1, transactions(detail)

    run(scenario())


def test_reconnect_replaces_previous_connection(server):
    """One live connection per charge point: the second connection wins, the first is closed."""

    async def scenario():
        async with charger(server, "UP-ZUI-02") as first:
            async with charger(server, "UP-ZUI-02") as second:
                try:
                    await asyncio.wait_for(first.ws.wait_closed(), 10)
                except asyncio.TimeoutError:
                    pytest.fail("the first connection was still open 10s after the second one booted")
                hb = await second.req(call16.Heartbeat())
                assert_recent(hb.current_time)

                await asyncio.sleep(1.0)  # let the server finish with the old connection
                detail = await server.acharger("UP-ZUI-02")
                assert detail["online"] is True, "closing the replaced connection must not mark the charger offline"
                # Commands reach the new connection.
                status, body = await server.command("UP-ZUI-02", "GetConfiguration", {"key": ["HeartbeatInterval"]})
                assert status == 200, body
                assert body["status"] == "answered"
                assert body["response"]["configurationKey"][0]["key"] == "HeartbeatInterval"
                assert ("GetConfiguration", {"key": ["HeartbeatInterval"]}) in second.incoming
                hb = await second.req(call16.Heartbeat())
                assert_recent(hb.current_time)

        await eventually(lambda: server.charger("UP-ZUI-02"), lambda d: d.get("online") is False,
                         what="UP-ZUI-02 offline after its last connection closed")

    run(scenario())


@pytest.mark.parametrize(
    ("password", "offered"),
    [("wrong-password-123", ["ocpp1.6"]), (None, ["ocpp1.6"]), ("demo-charger-pass", ["ocpp1.2"])],
    ids=["wrong-password", "no-password", "no-subprotocol"],
)
def test_refused_handshake_does_not_disturb_the_live_connection(server, password, offered):
    async def scenario():
        async with charger(server, "UP-ZUI-02") as cp:
            status = await handshake_status(server, "UP-ZUI-02", password, offered)
            assert status in (400, 401, 426), status
            await asyncio.sleep(0.5)
            assert cp.ws.close_code is None, f"the live connection was closed ({cp.ws.close_code}) by a refused attempt"
            hb = await cp.req(call16.Heartbeat())
            assert_recent(hb.current_time)
            detail = await server.acharger("UP-ZUI-02")
            assert detail["online"] is True

    run(scenario())


def test_server_restart_mid_transaction(server):
    """A transaction survives a server restart; the charge point carries on and stops it later."""

    async def scenario_before():
        async with charger(server, "UP-ZUI-01") as cp:
            await cp.status(1, "Preparing")
            start = await cp.req(call16.StartTransaction(connector_id=1, id_tag="DEMO-TAG-1", meter_start=20000,
                                                         timestamp=now_iso(-120)))
            assert start.id_tag_info["status"] == "Accepted"
            await cp.status(1, "Charging")
            await cp.req(call16.MeterValues(connector_id=1, transaction_id=start.transaction_id,
                                            meter_value=[meter_value_16(now_iso(-60), 21000)]))
            return start.transaction_id

    tx = run(scenario_before())
    server.restart()  # SIGTERM, then the same data dir / database

    async def scenario_after():
        detail = await server.acharger("UP-ZUI-01")
        assert detail["online"] is False, "nobody is connected to the restarted server yet"
        row = tx_by_id(detail, tx)
        assert row is not None and row["status"] == "active", f"transaction {tx} after restart: {row}"
        assert row["meter_start_wh"] == 20000

        # The charge point did not reboot: it just reconnects and goes on, without a BootNotification.
        async with charger(server, "UP-ZUI-01", boot=False) as cp:
            res = await cp.req(call16.MeterValues(connector_id=1, transaction_id=tx,
                                                  meter_value=[meter_value_16(now_iso(-10), 24000)]))
            assert isinstance(res, result16.MeterValues)
            stop = await cp.req(call16.StopTransaction(
                meter_stop=26000, timestamp=now_iso(), transaction_id=tx, reason="EVDisconnected", id_tag="DEMO-TAG-1",
                transaction_data=[meter_value_16(now_iso(), 26000, "Transaction.End")]))
            if stop.id_tag_info is not None:
                assert stop.id_tag_info["status"] == "Accepted"
            await cp.status(1, "Available")
            await eventually(lambda: server.charger("UP-ZUI-01"), completed(tx, 20000, 26000),
                             what=f"transaction {tx} completed 20000 -> 26000 Wh after the restart")

    run(scenario_after())


# ---------------------------------------------------------------------------------------------
# Malformed frames: each answered (or ignored) and the connection stays up
# ---------------------------------------------------------------------------------------------

OCCURRENCE_16 = {"OccurrenceConstraintViolation", "OccurenceConstraintViolation"}

# (name, raw frame (or a function of the message id), acceptable codes (None: any), message id expected)
MALFORMED_16 = [
    ("not_json", lambda mid: "this is { not json", {"FormationViolation"}, "-1"),
    ("truncated_json", lambda mid: f'[2,"{mid}","Heartbeat",{{', {"FormationViolation"}, ("-1", "{mid}")),
    ("unknown_action", lambda mid: json.dumps([2, mid, "FlyToTheMoon", {}]), {"NotImplemented"}, "{mid}"),
    # Its name echoed in the CALLERROR straddles the 255-byte cut with a two-byte letter.
    ("unknown_action_multibyte", lambda mid: json.dumps([2, mid, "A" * 239 + "é", {}], ensure_ascii=False),
     {"NotImplemented"}, "{mid}"),
    ("missing_required_field", lambda mid: json.dumps([2, mid, "Authorize", {}]), OCCURRENCE_16, "{mid}"),
    ("wrong_type", lambda mid: json.dumps([2, mid, "Authorize", {"idTag": 12345}]), {"TypeConstraintViolation"}, "{mid}"),
    ("enum_out_of_set", lambda mid: json.dumps(
        [2, mid, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Exploded"}]),
     {"PropertyConstraintViolation"}, "{mid}"),
    ("unknown_message_type", lambda mid: json.dumps([7, mid, {}]), None, None),
    ("json_but_not_an_array", lambda mid: json.dumps({"hello": "world"}), None, None),
    ("call_without_payload", lambda mid: json.dumps([2, mid, "Heartbeat"]), None, None),
]


@pytest.mark.parametrize(("name", "make", "codes", "expected_id"), MALFORMED_16, ids=[m[0] for m in MALFORMED_16])
def test_malformed_frame_gets_call_error_and_connection_survives(server, name, make, codes, expected_id):
    async def scenario():
        async with raw_charger(server, "UP-ZUI-02", "1.6") as raw:
            boot = await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
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
                if expected_id is not None:
                    allowed = {e.format(mid=mid) for e in ((expected_id,) if isinstance(expected_id, str) else expected_id)}
                    assert answer[1] in allowed, f"{name}: CALLERROR id {answer[1]!r}, expected {sorted(allowed)}"
                await raw.heartbeat_ok()

    run(scenario())


def test_unsolicited_call_result_is_ignored(server):
    """A CALLRESULT nobody asked for must not break the connection."""

    async def scenario():
        async with raw_charger(server, "UP-ZUI-02", "1.6") as raw:
            boot = await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            assert boot[2]["status"] == "Accepted"
            await raw.send(json.dumps([3, "nobody-asked-for-this", {}]))
            await raw.send(json.dumps([4, "nobody-asked-either", "GenericError", "", {}]))
            await raw.send(json.dumps([2, "hb-after-stray", "Heartbeat", {}]))
            while True:
                frame = await raw.next_answer()
                if frame[1] in ("nobody-asked-for-this", "nobody-asked-either"):
                    assert frame[0] == 4, frame  # tolerated: a CALLERROR about the stray frame
                    continue
                break
            assert frame[0] == 3 and frame[1] == "hb-after-stray", frame
            assert_recent(frame[2]["currentTime"])

    run(scenario())


# ---------------------------------------------------------------------------------------------
# Handshake: subprotocol, security profile 1, auto-registration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offered", [None, ["ocpp1.2"], ["mqtt", "chat"]], ids=["none", "ocpp1.2", "others"])
def test_handshake_without_supported_subprotocol_is_refused(server, offered):
    status = run(handshake_status(server, "FM-CAM-01", "demo-charger-pass", offered))
    assert status in (400, 426), f"handshake offering {offered} answered HTTP {status}"


@pytest.mark.parametrize("password", ["wrong-password-123", None], ids=["wrong", "missing"])
def test_wrong_or_missing_password_is_401(server, password):
    status = run(handshake_status(server, "FM-CAM-01", password, ["ocpp1.6"]))
    assert status == 401, f"handshake with password {password!r} answered HTTP {status}"


def test_auto_registration_trust_on_first_use(server):
    cp_id = unique("E2E16-AUTO")
    password = "first-use-pass-123"

    async def scenario():
        async with charger(server, cp_id, password=password) as cp:  # boot asserts Accepted
            await cp.status(1, "Available")
            hb = await cp.req(call16.Heartbeat())
            assert_recent(hb.current_time)
            detail = await server.acharger(cp_id)
            assert detail["id"] == cp_id and detail["online"] is True

        # The password is now the charger's: the same one works, another one does not.
        async with charger(server, cp_id, password=password, boot=False) as cp:
            hb = await cp.req(call16.Heartbeat())
            assert_recent(hb.current_time)
        assert await handshake_status(server, cp_id, "another-password-456", ["ocpp1.6"]) == 401

        # Auto-registered chargers land at FreshMart (free vend): unknown tags are accepted.
        async with charger(server, cp_id, password=password, boot=False) as cp:
            res = await cp.req(call16.Authorize(id_tag="NEVER-SEEN-TAG-99"))
            assert res.id_tag_info["status"] == "Accepted"

        status, listing = await server.ahttp("GET", "/api/v1/chargers")
        assert status == 200 and any(c.get("id") == cp_id for c in listing), listing

    run(scenario())


def test_username_must_be_the_charge_point_id(server):
    """FM-CAM-02's credentials do not open FM-CAM-01's connection (same password, other charger)."""
    status = run(handshake_status(server, "FM-CAM-01", "demo-charger-pass", ["ocpp1.6"], user="FM-CAM-02"))
    assert status == 401, f"FM-CAM-02's credentials on FM-CAM-01's URL answered HTTP {status}"


def test_auto_registration_needs_a_long_enough_password(server):
    cp_id = unique("E2E16-SHORT")
    status = run(handshake_status(server, cp_id, "short", ["ocpp1.6"]))
    assert status in (400, 401, 403), f"auto-registration with a 5-character password answered HTTP {status}"

    # And the id was not taken by that attempt: a proper password still registers it.
    async def scenario():
        async with charger(server, cp_id, password="long-enough-pass") as cp:
            hb = await cp.req(call16.Heartbeat())
            assert_recent(hb.current_time)

    run(scenario())


def test_auto_registered_password_survives_a_restart(server):
    cp_id = unique("E2E16-TOFU")
    password = "persisted-pass-123"

    async def register():
        async with charger(server, cp_id, password=password) as cp:
            await cp.status(1, "Available")

    run(register())
    server.restart()

    async def after_restart():
        assert await handshake_status(server, cp_id, "another-password-456", ["ocpp1.6"]) == 401
        async with charger(server, cp_id, password=password, boot=False) as cp:
            hb = await cp.req(call16.Heartbeat())
            assert_recent(hb.current_time)
            detail = await server.acharger(cp_id)
            assert detail["online"] is True

    run(after_restart())


# --------------------------------------------------------------------------------------------
# Per-model settings: a known model's bends accepted on purpose
# --------------------------------------------------------------------------------------------
def test_a_lenient_model_is_read_as_meant_and_others_are_held_to_the_schema(server):
    """PUT /api/v1/charger-models marks a model lenient and kWh-metered: its chargers have misspelt
    enum values read as meant, meter samples of unknown kinds dropped (the rest kept) and kWh
    meterStart/meterStop stored in Wh. The same frames from another model are refused."""
    vendor, model = "Bendy", unique("B")[-20:]
    status, body = server.http("PUT", "/api/v1/charger-models",
                               {"vendor": vendor, "model": model, "lenient": True, "meter_in_kwh": True, "note": "E2E"})
    assert status == 200 and body["lenient"] is True, body
    status, models = server.http("GET", "/api/v1/charger-models")
    assert status == 200 and {"vendor": vendor, "model": model, "lenient": True, "meter_in_kwh": True, "session_register": False, "note": "E2E"} in models, models
    status, body = server.http("PUT", "/api/v1/charger-models", {"vendor": "", "model": "X"})
    assert status == 422, body

    status_frame = {"connectorId": 1, "errorCode": "NoError", "status": "suspended_ev"}
    meter_frame = {"connectorId": 1, "meterValue": [{"timestamp": now_iso(), "sampledValue": [
        {"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "31", "measurand": "Battery.Wear"}]}]}

    async def scenario():
        bendy = unique("E2E16-BENDY")
        async with raw_charger(server, bendy, "1.6", password="bendy-pass-1234") as cp:
            frame = await cp.call("BootNotification", {"chargePointVendor": vendor, "chargePointModel": model})
            assert frame[0] == 3 and frame[2]["status"] == "Accepted", frame
            frame = await cp.call("StatusNotification", status_frame)
            assert frame[0] == 3, f"a lenient model's misspelt status was refused: {frame}"
            frame = await cp.call("MeterValues", meter_frame)
            assert frame[0] == 3, f"a lenient model's unknown measurand was refused: {frame}"
            frame = await cp.call("StartTransaction", {"connectorId": 1, "idTag": "DEMO-TAG-1", "meterStart": 12, "timestamp": now_iso()})
            assert frame[0] == 3, frame
            tx = frame[2]["transactionId"]
            frame = await cp.call("StopTransaction", {"transactionId": tx, "meterStop": 15, "timestamp": now_iso()})
            assert frame[0] == 3, frame
        detail = await server.acharger(bendy)
        assert connector_status(detail, 1) == "SuspendedEV", detail
        done = [t for t in transactions(detail) if t["ocpp_transaction_id"] == str(tx)]
        assert done and done[0]["meter_start_wh"] == 12000 and done[0]["energy_wh"] == 3000, done

        strict = unique("E2E16-STRICT")
        async with raw_charger(server, strict, "1.6", password="strict-pass-1234") as cp:
            frame = await cp.call("BootNotification", {"chargePointVendor": vendor, "chargePointModel": "Other"})
            assert frame[0] == 3, frame
            frame = await cp.call("StatusNotification", status_frame)
            assert frame[0] == 4 and frame[2] == "PropertyConstraintViolation", frame
            assert "status" in frame[3], f"the error should name the field: {frame}"
            frame = await cp.call("MeterValues", meter_frame)
            assert frame[0] == 4 and frame[2] == "PropertyConstraintViolation", frame
            await cp.heartbeat_ok()

    run(scenario())


def test_a_message_beyond_the_size_limit_closes_that_connection_only(server):
    """OCPP messages are a few KB: one of 600 KiB (over the 512 KiB default) ends its connection,
    which is let go of cleanly, and the server and other chargers carry on."""
    import websockets

    async def scenario():
        async with raw_charger(server, "UP-ZUI-01", "1.6") as honest:
            boot = await honest.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            assert boot[2]["status"] == "Accepted", boot
            async with raw_charger(server, "UP-ZUI-02", "1.6") as big:
                huge = json.dumps([2, "huge-1", "DataTransfer", {"vendorId": "E2E", "data": "x" * (600 * 1024)}])
                await big.send(huge)
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await big.next_answer(timeout=10)
            # Let go of cleanly: not left "connected" in the registry.
            await eventually(lambda: server.charger("UP-ZUI-02"), lambda c: c["connected"] is False,
                             what="the oversized charger's connection to be let go")
            await honest.heartbeat_ok()
        # A large batch within the limit (some 300 KiB of energy readings) is still taken.
        async with raw_charger(server, "UP-ZUI-02", "1.6") as fine:
            await fine.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            batch = [{"timestamp": now_iso(), "sampledValue": [{"value": str(1000 + k)}]} for k in range(5000)]
            assert 250 * 1024 < len(json.dumps(batch)) < 512 * 1024
            answer = await fine.call("MeterValues", {"connectorId": 1, "meterValue": batch})
            assert answer[0] == 3, answer

    run(scenario())


def test_a_connector_beyond_the_networks_limit_is_refused_and_never_stored(server):
    """A charger cannot mint connectors without end (each one stored and its site's balancer
    rebuilt): connector 17 is beyond the default limit of 16, refused with a CALLERROR, and the
    link stays up."""

    async def scenario():
        async with raw_charger(server, "UP-ZUI-02", "1.6") as raw:
            await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            for action, payload in [
                ("StatusNotification", {"connectorId": 17, "errorCode": "NoError", "status": "Available"}),
                ("MeterValues", {"connectorId": 99, "meterValue": [meter_value_16(now_iso(), 1000)]}),
                ("StartTransaction", {"connectorId": 1000, "idTag": "DEMO-TAG-1", "meterStart": 0, "timestamp": now_iso()}),
            ]:
                answer = await raw.call(action, payload)
                assert answer[0] == 4 and answer[2] == "PropertyConstraintViolation", (action, answer)
                assert "limit of 16" in answer[3], answer
                await raw.heartbeat_ok()
        detail = await server.acharger("UP-ZUI-02")
        assert all(c["connector_no"] <= 16 for c in detail["connectors"]), detail["connectors"]

    run(scenario())
