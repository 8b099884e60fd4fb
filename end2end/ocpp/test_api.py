"""The operator REST API around the OCPP server: auth, OpenAPI, and commands to chargers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time

import pytest
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201

from ocpp_kit import Charger16, Charger201, charger, raw_charger, run

DEMO_CHARGERS = {"FM-CAM-01", "FM-CAM-02", "UP-ZUI-01", "UP-ZUI-02"}


@pytest.mark.parametrize("token", [None, "not-the-token", ""], ids=["missing", "wrong", "empty"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/chargers", None),
        ("GET", "/api/v1/chargers/FM-CAM-01", None),
        ("POST", "/api/v1/chargers/FM-CAM-01/commands/RemoteStartTransaction", {"connectorId": 1, "idTag": "DEMO-TAG-1"}),
    ],
    ids=["list", "detail", "command"],
)
def test_requests_without_a_valid_token_get_401(server, token, method, path, body):
    status, answer = server.http(method, path, body, token=token)
    assert status == 401, f"{method} {path} with token {token!r}: HTTP {status} {answer}"


def test_charger_list_has_the_demo_chargers(server):
    status, listing = server.http("GET", "/api/v1/chargers")
    assert status == 200, listing
    assert isinstance(listing, list), listing
    by_id = {c["id"]: c for c in listing}
    assert DEMO_CHARGERS <= set(by_id), f"demo chargers missing: {DEMO_CHARGERS - set(by_id)}"
    for cid in DEMO_CHARGERS:
        assert isinstance(by_id[cid]["online"], bool), by_id[cid]
        assert "ocpp_version" in by_id[cid], by_id[cid]


def test_charger_detail_lists_the_connectors(server):
    detail = server.charger("FM-CAM-01")
    assert detail["id"] == "FM-CAM-01"
    assert isinstance(detail["transactions"], list)
    numbers = sorted(c["connector_no"] for c in detail["connectors"])
    assert numbers[-2:] == [1, 2] and set(numbers) <= {0, 1, 2}, detail["connectors"]
    for c in detail["connectors"]:
        assert "status" in c, c
    up = server.charger("UP-ZUI-01")
    assert [c["connector_no"] for c in up["connectors"] if c["connector_no"] > 0] == [1], up["connectors"]


def test_unknown_charger_is_404(server):
    status, body = server.http("GET", "/api/v1/chargers/NO-SUCH-CHARGER")
    assert status == 404, body


def test_openapi_document(server):
    status, doc = server.http("GET", "/api/openapi.json")
    assert status == 200, doc
    assert isinstance(doc, dict), f"not a JSON object: {str(doc)[:200]}"
    assert str(doc.get("openapi", "")).startswith("3."), doc.get("openapi")
    assert isinstance(doc.get("paths"), dict) and doc["paths"], "no paths"
    assert any(p.startswith("/api/v1/chargers") for p in doc["paths"]), sorted(doc["paths"])


def test_command_to_offline_charger_is_409_at_once(server):
    # UP-ZUI-02 never connects to this module's server.
    started = time.monotonic()
    status, body = server.http("POST", "/api/v1/chargers/UP-ZUI-02/commands/RemoteStartTransaction",
                               {"connectorId": 1, "idTag": "DEMO-TAG-1"})
    elapsed = time.monotonic() - started
    assert status == 409, body
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert elapsed < 5, f"took {elapsed:.1f}s to say the charger is offline"


def test_command_to_unknown_charger_is_refused(server):
    status, body = server.http("POST", "/api/v1/chargers/NO-SUCH-CHARGER/commands/Reset", {"type": "Soft"})
    assert status in (404, 409), body


class Recorder16(Charger16):
    """Records remote-start requests; it has no Reset handler, so Reset gets a CALLERROR."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.remote_starts: list[dict] = []

    @on(Action.remote_start_transaction)
    def on_remote_start(self, **payload):
        self.remote_starts.append(payload)
        return result16.RemoteStartTransaction(status="Rejected")


def test_unknown_action_is_refused(server):
    async def scenario():
        async with charger(server, "FM-CAM-02", cls=Recorder16) as cp:
            status, body = await server.command("FM-CAM-02", "MakeCoffee", {"sugar": 2})
            assert status in (400, 404), body
            assert isinstance(body, dict) and body.get("error"), body
            # A 2.0.1 action is not a 1.6 one: the connected charger's version decides.
            status, body = await server.command("FM-CAM-02", "RequestStartTransaction", {
                "idToken": {"idToken": "DEMO-TAG-1", "type": "Central"}, "remoteStartId": 1, "evseId": 1})
            assert status in (400, 404), body
            assert isinstance(body, dict) and body.get("error"), body
            assert cp.remote_starts == []

    run(scenario())


BAD_REMOTE_START = [
    ("missing_required", {"connectorId": 1}),
    ("wrong_type", {"connectorId": "one", "idTag": "DEMO-TAG-1"}),
    ("too_long", {"idTag": "X" * 21}),  # idTag is CiString20Type
    ("extra_property", {"idTag": "DEMO-TAG-1", "surprise": True}),  # additionalProperties: false
    ("not_an_object", ["DEMO-TAG-1"]),
    ("not_json", b"{not json"),
]


@pytest.mark.parametrize(("name", "body"), BAD_REMOTE_START, ids=[b[0] for b in BAD_REMOTE_START])
def test_payload_not_fitting_the_schema_is_400_and_not_sent(server, name, body):
    async def scenario():
        async with charger(server, "FM-CAM-02", cls=Recorder16) as cp:
            status, answer = await server.ahttp(
                "POST", "/api/v1/chargers/FM-CAM-02/commands/RemoteStartTransaction", body)
            assert status == 400, (name, status, answer)
            assert isinstance(answer, dict) and answer.get("error"), answer
            assert cp.remote_starts == [], f"the invalid command reached the charger: {cp.remote_starts}"

    run(scenario())


class Recorder201(Charger201):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.remote_starts: list[dict] = []

    @on(Action201.request_start_transaction)
    def on_request_start(self, **payload):
        self.remote_starts.append(payload)
        return result201.RequestStartTransaction(status="Rejected")


BAD_REQUEST_START = [
    ("missing_remote_start_id", {"idToken": {"idToken": "DEMO-TAG-1", "type": "Central"}}),
    ("enum_out_of_set", {"idToken": {"idToken": "DEMO-TAG-1", "type": "Telepathy"}, "remoteStartId": 1}),
    ("wrong_type", {"idToken": {"idToken": "DEMO-TAG-1", "type": "Central"}, "remoteStartId": "one"}),
    ("too_long", {"idToken": {"idToken": "T" * 37, "type": "Central"}, "remoteStartId": 1}),  # identifierString 36
    ("extra_property", {"idToken": {"idToken": "DEMO-TAG-1", "type": "Central"}, "remoteStartId": 1, "evseID": 1}),
]


@pytest.mark.parametrize(("name", "body"), BAD_REQUEST_START, ids=[b[0] for b in BAD_REQUEST_START])
def test_201_payload_not_fitting_the_schema_is_400_and_not_sent(server, name, body):
    async def scenario():
        async with charger(server, "FM-CAM-01", "2.0.1", cls=Recorder201) as cp:
            status, answer = await server.command("FM-CAM-01", "RequestStartTransaction", body)
            assert status == 400, (name, status, answer)
            assert isinstance(answer, dict) and answer.get("error"), answer
            assert cp.remote_starts == [], f"the invalid command reached the station: {cp.remote_starts}"
        # and a valid one goes through
        async with charger(server, "FM-CAM-01", "2.0.1", cls=Recorder201) as cp:
            status, answer = await server.command("FM-CAM-01", "RequestStartTransaction", {
                "idToken": {"idToken": "DEMO-TAG-1", "type": "Central"}, "remoteStartId": 1, "evseId": 1})
            assert status == 200 and answer == {"status": "answered", "response": {"status": "Rejected"}}, answer
            assert len(cp.remote_starts) == 1

    run(scenario())


def test_16_action_to_a_201_station_is_refused(server):
    async def scenario():
        async with charger(server, "FM-CAM-01", "2.0.1", cls=Recorder201) as cp:
            status, body = await server.command("FM-CAM-01", "RemoteStartTransaction",
                                                {"connectorId": 1, "idTag": "DEMO-TAG-1"})
            assert status in (400, 404), body
            assert isinstance(body, dict) and body.get("error"), body
            assert cp.remote_starts == []

    run(scenario())


def test_answers_are_passed_through_and_call_errors_are_502(server):
    async def scenario():
        async with charger(server, "FM-CAM-02", cls=Recorder16) as cp:
            status, body = await server.command("FM-CAM-02", "RemoteStartTransaction",
                                                {"connectorId": 1, "idTag": "DEMO-TAG-1"})
            assert status == 200, body
            assert body == {"status": "answered", "response": {"status": "Rejected"}} or (
                body.get("status") == "answered" and body.get("response") == {"status": "Rejected"}), body
            assert cp.remote_starts == [{"connector_id": 1, "id_tag": "DEMO-TAG-1"}]

            # The charger answers Reset with a CALLERROR (NotImplemented): 502 with its code.
            status, body = await server.command("FM-CAM-02", "Reset", {"type": "Soft"})
            assert status == 502, body
            assert body.get("status") == "call_error" and body.get("code") == "NotImplemented", body

            # The connection is still fine afterwards.
            status, body = await server.command("FM-CAM-02", "GetConfiguration", {})
            assert status == 200 and body["status"] == "answered", body
            assert body["response"]["configurationKey"][0]["key"] == "HeartbeatInterval"
            hb = await cp.req(call16.Heartbeat())
            assert hb.current_time

    run(scenario())


def test_charger_calls_are_answered_while_a_command_is_pending(server):
    """OCPP-J is full duplex: the server answers the charger while waiting for the charger's answer."""

    async def scenario():
        async with raw_charger(server, "FM-CAM-01", "1.6") as raw:
            boot = await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            assert boot[2]["status"] == "Accepted"
            pending = asyncio.create_task(server.command("FM-CAM-01", "GetConfiguration", {"key": ["X"]}))
            frame = await raw.expect_call("GetConfiguration")
            assert frame[3] == {"key": ["X"]}, frame
            await raw.ws.send(json.dumps([2, "hb-meanwhile", "Heartbeat", {}]))
            answer = json.loads(await asyncio.wait_for(raw.ws.recv(), 10))
            assert answer[0] == 3 and answer[1] == "hb-meanwhile", answer
            # A result carrying an id the server never used is not taken for the pending one.
            await raw.ws.send(json.dumps([3, "not-" + frame[1], {"configurationKey": [], "unknownKey": ["Y"]}]))
            await raw.ws.send(json.dumps([3, frame[1], {"configurationKey": [], "unknownKey": ["X"]}]))
            status, body = await asyncio.wait_for(pending, 15)
            assert status == 200, body
            assert body == {"status": "answered", "response": {"configurationKey": [], "unknownKey": ["X"]}}, body

    run(scenario())


def test_command_pending_when_the_charger_disconnects_fails_promptly(server):
    """Beyond the written contract: the REST call should not sit out the 30 s command timeout."""

    async def scenario():
        async with raw_charger(server, "FM-CAM-01", "1.6") as raw:
            boot = await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            assert boot[2]["status"] == "Accepted"
            pending = asyncio.create_task(server.command("FM-CAM-01", "RemoteStartTransaction", {"idTag": "DEMO-TAG-1"}))
            await raw.expect_call("RemoteStartTransaction")
            await raw.ws.close()
            started = time.monotonic()
            status, body = await asyncio.wait_for(pending, 40)
            assert status != 200, body
            assert time.monotonic() - started < 10, f"the REST call waited {time.monotonic() - started:.0f}s"

    run(scenario())


def test_one_call_at_a_time_towards_a_charger(server):
    """OCPP-J: no new CALL to the charger until the previous one is answered. A second command either
    waits for the first, or is refused at once; it is never put on the wire next to it."""

    async def scenario():
        async with raw_charger(server, "FM-CAM-01", "1.6") as raw:
            boot = await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            assert boot[2]["status"] == "Accepted"
            first = asyncio.create_task(server.command("FM-CAM-01", "GetConfiguration", {"key": ["A"]}))
            call_a = await raw.expect_call("GetConfiguration")
            assert call_a[3] == {"key": ["A"]}, call_a
            second = asyncio.create_task(server.command("FM-CAM-01", "GetConfiguration", {"key": ["B"]}))
            try:
                early = await asyncio.wait_for(raw.ws.recv(), 1.5)
            except asyncio.TimeoutError:
                early = None
            assert early is None, f"a second CALL was sent while the first was unanswered: {early}"
            await raw.ws.send(json.dumps([3, call_a[1], {"unknownKey": ["A"]}]))
            status, body = await asyncio.wait_for(first, 10)
            assert status == 200 and body["response"] == {"unknownKey": ["A"]}, body
            if second.done():  # refused at once: fine, as long as it says so
                status, body = second.result()
                assert status >= 400 and body.get("error"), body
                return
            call_b = await raw.expect_call("GetConfiguration")
            assert call_b[3] == {"key": ["B"]} and call_b[1] != call_a[1], call_b
            await raw.ws.send(json.dumps([3, call_b[1], {"unknownKey": ["B"]}]))
            status, body = await asyncio.wait_for(second, 10)
            assert status == 200 and body["response"] == {"unknownKey": ["B"]}, body

    run(scenario())


def test_an_answer_that_breaks_the_schema_is_passed_on_and_flagged(server):
    """A charger answers ChangeAvailability with a status the 1.6 schema does not have: the operator
    sees its answer as it came, marked as breaking the schema (nothing is silently repaired)."""

    async def scenario():
        async with raw_charger(server, "FM-CAM-02", "1.6") as cp:
            frame = await cp.call("BootNotification", {"chargePointVendor": "Odd", "chargePointModel": "Answers"})
            assert frame[0] == 3 and frame[2]["status"] == "Accepted", frame
            command = asyncio.create_task(server.command("FM-CAM-02", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}))
            call = await cp.expect_call("ChangeAvailability")
            await cp.send(json.dumps([3, call[1], {"status": "Maybe"}]))
            status, body = await command
            assert status == 200, body
            assert body["status"] == "answered" and body["response"] == {"status": "Maybe"}, body
            assert body.get("schema_violation"), body

            # A well-formed answer carries no such mark.
            command = asyncio.create_task(server.command("FM-CAM-02", "ChangeAvailability", {"connectorId": 0, "type": "Operative"}))
            call = await cp.expect_call("ChangeAvailability")
            await cp.send(json.dumps([3, call[1], {"status": "Scheduled"}]))
            status, body = await command
            assert status == 200 and body == {"status": "answered", "response": {"status": "Scheduled"}}, body

    run(scenario())


def test_metrics_count_connected_chargers_and_their_calls(server):
    """Prometheus /metrics: live connections and the calls chargers make, by action and outcome;
    an action name a charger invents does not become a label."""

    async def scenario():
        async with charger(server, "FM-CAM-01") as cp:
            await cp.status(1, "Available")
            async with raw_charger(server, "FM-CAM-02", "1.6") as raw:
                frame = await raw.call("MadeUpAction", {})
                assert frame[0] == 4, frame
                status, text = await server.ahttp("GET", "/metrics", token=None)
                assert status == 200, text
                lines = text.splitlines() if isinstance(text, str) else []
                connected = [l for l in lines if l.startswith("ocpp_connected_chargers ")]
                assert connected and float(connected[0].split()[1]) >= 2, connected
                assert any(l.startswith("ocpp_calls_total{") and 'action="BootNotification"' in l and 'outcome="result"' in l for l in lines), lines
                assert any(l.startswith("ocpp_calls_total{") and 'action="unknown"' in l and 'outcome="error"' in l for l in lines), lines
                assert not any("MadeUpAction" in l for l in lines)

    run(scenario())


def test_commands_to_a_charger_that_does_not_answer_are_turned_away_once_its_queue_is_full(server):
    """A charger that never answers holds one CALL in flight and the registry's queue of 32 behind it;
    every command past that is answered 429 at once instead of piling up in the connection."""

    async def scenario():
        async with raw_charger(server, "UP-ZUI-02", "1.6") as raw:
            await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            # From here the charger reads nothing: every CALL to it stays unanswered.
            started = time.monotonic()
            # Forty at once: a thread each (asyncio's default pool would send them six at a time).
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=40)
            loop = asyncio.get_running_loop()
            path = "/api/v1/chargers/UP-ZUI-02/commands/ClearCache"
            sent = [asyncio.ensure_future(loop.run_in_executor(pool, server.http, "POST", path, {})) for _ in range(40)]
            busy = []
            while time.monotonic() - started < 10 and len(busy) < 7:
                busy = [t.result() for t in sent if t.done() and t.result()[0] == 429]
                await asyncio.sleep(0.1)
            assert len(busy) >= 7, f"{len(busy)} of 40 turned away: {[t.result() for t in sent if t.done()]}"
            assert all("too many commands waiting" in body["error"] for _, body in busy), busy
        # The charger gone, the calls it held are answered too, none left hanging.
        done, pending = await asyncio.wait(sent, timeout=40)
        assert not pending, f"{len(pending)} commands still waiting after the charger left"
        statuses = sorted(t.result()[0] for t in done)
        assert set(statuses) <= {429, 502, 504}, statuses

    run(scenario())


def test_the_frame_log_keeps_no_credentials_and_only_the_end_of_an_id_tag(server):
    """What support reads in the raw frame log: the messages, without the secrets in them."""

    async def scenario():
        async with raw_charger(server, "UP-ZUI-02", "1.6") as raw:
            await raw.call("BootNotification", {"chargePointModel": "Raw", "chargePointVendor": "E2E"})
            await raw.call("Authorize", {"idTag": "SECRET-CARD-4321"})
            # An operator sets the charger's AuthorizationKey (security profile 2); the charger answers.
            command = asyncio.create_task(server.command(
                "UP-ZUI-02", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "0011223344556677"}))
            while True:  # the balancer's own settings at boot come first
                call = await raw.expect_call("ChangeConfiguration")
                await raw.send(json.dumps([3, call[1], {"status": "Accepted"}]))
                if call[3]["key"] == "AuthorizationKey":
                    break
            status, body = await command
            assert status == 200, body
        status, frames = await server.ahttp("GET", "/api/v1/chargers/UP-ZUI-02/frames?limit=50")
        assert status == 200, frames
        text = "\n".join(f["frame"] for f in frames)
        assert "Authorize" in text and "ChangeConfiguration" in text, text[:2000]
        assert "SECRET-CARD-4321" not in text and "4321" in text, "the id tag is masked to its last four"
        assert "0011223344556677" not in text and "[redacted]" in text, "the key is not kept"

    run(scenario())
