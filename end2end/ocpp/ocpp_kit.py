"""Shared pieces for the OCPP tests: the server process, independent chargers, raw frames, REST.

The chargers are the PyPI `ocpp` package's ChargePoint classes, talking over `websockets`. The
package validates every response the server sends against the official OCPP JSON schemas, so a
test that completes a call has also checked the shape of the server's answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError as OcppNotSupported
from ocpp.exceptions import OCPPError
from ocpp.messages import get_validator
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

REPO = Path(__file__).resolve().parents[2]
FORECOURT_BIN = os.environ.get("FORECOURT_BIN", str(REPO / "target" / "debug" / "forecourt"))
DEMO_CHARGER_PASS = "demo-charger-pass"
OPERATOR_TOKEN = "demo-operator-api-token"
SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
TEST_TIMEOUT = 120  # seconds for one scenario, a safety net: nothing here should take this long

# --------------------------------------------------------------------------------------------
# Small utilities
# --------------------------------------------------------------------------------------------


def now_iso(offset_s: float = 0.0) -> str:
    t = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"timestamp without a time zone: {value!r}"
    return parsed


def assert_recent(value: str, tolerance_s: float = 300) -> None:
    """A currentTime from the server must be a real, current UTC timestamp."""
    delta = abs((parse_iso(value) - datetime.now(timezone.utc)).total_seconds())
    assert delta < tolerance_s, f"server time {value!r} is {delta:.0f}s away from now"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def run(coro, timeout: float = TEST_TIMEOUT):
    """Run one async scenario from a sync test, with an overall time limit."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def norm(value) -> str:
    """Compare enum-ish strings loosely: 'SuspendedEV', 'suspended_ev' and 'suspended-ev' match."""
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------

RUNNING_RE = re.compile(r"Forecourt is running at (https?://\S+)")


class Server:
    """One `forecourt serve` process on a fixed data dir / database, restartable."""

    def __init__(self, backend: str, data_dir: Path, database_url: str | None):
        self.backend = backend
        self.data_dir = data_dir
        self.database_url = database_url
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.proc: subprocess.Popen | None = None
        self.base_url: str | None = None
        self.port: int | None = None
        self.notes: list[str] = []
        # More `serve` flags (a mail server, say).
        self.extra_args: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------

    def argv(self) -> list[str]:
        cmd = [
            FORECOURT_BIN,
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            "--themes-dir",
            str(REPO / "themes"),
            "--site-root",
            str(REPO / "target" / "site"),
        ]
        if self.database_url:
            cmd += ["--database-url", self.database_url]
        return cmd + self.extra_args

    def start(self, timeout: float = 120) -> None:
        assert self.proc is None, "server already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a", buffering=1)
        log.write(f"\n===== starting: {' '.join(self.argv())}\n")
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        proc = subprocess.Popen(
            self.argv(),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        found = threading.Event()
        box: dict[str, str] = {}

        def pump():
            for line in proc.stdout:  # type: ignore[union-attr]
                log.write(line)
                if not found.is_set():
                    m = RUNNING_RE.search(line)
                    if m:
                        box["url"] = m.group(1).rstrip("/")
                        found.set()
            log.write("===== stdout closed\n")

        threading.Thread(target=pump, daemon=True, name="forecourt-stdout").start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.2):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"forecourt exited with {proc.returncode} before it was running\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"forecourt did not report its address in {timeout}s\n{self.log_tail()}")
        self.proc = proc
        self.base_url = box["url"]
        self.port = urllib.parse.urlsplit(self.base_url).port
        assert self.port, f"no port in {self.base_url!r}"

    def stop(self, timeout: float = 20) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.notes.append(f"forecourt ignored SIGTERM for {timeout}s; killed")
                proc.kill()
                proc.wait()
        return proc.returncode

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "\n".join(text[-lines:])

    # -- addresses -------------------------------------------------------------------------

    def ws_url(self, charger_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{urllib.parse.quote(charger_id, safe='')}"

    # -- REST --------------------------------------------------------------------------------

    def http(self, method: str, path: str, body=None, token: str | None = OPERATOR_TOKEN, timeout: float = 45):
        """Blocking HTTP call. Returns (status, parsed JSON or text). Never raises on 4xx/5xx."""
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        return fetch(req, timeout=timeout)

    async def ahttp(self, method: str, path: str, body=None, token: str | None = OPERATOR_TOKEN, timeout: float = 45):
        """The same from async code: in a thread, so the chargers' loops keep answering meanwhile."""
        return await asyncio.to_thread(self.http, method, path, body, token, timeout)

    def charger(self, charger_id: str) -> dict:
        status, body = self.http("GET", f"/api/v1/chargers/{urllib.parse.quote(charger_id, safe='')}")
        assert status == 200, f"GET charger {charger_id}: HTTP {status}: {body}"
        assert isinstance(body, dict), body
        return body

    async def acharger(self, charger_id: str) -> dict:
        return await asyncio.to_thread(self.charger, charger_id)

    async def command(self, charger_id: str, action: str, payload) -> tuple[int, object]:
        return await self.ahttp(
            "POST", f"/api/v1/chargers/{urllib.parse.quote(charger_id, safe='')}/commands/{action}", payload
        )


def fetch(req: urllib.request.Request, opener=urllib.request.urlopen, timeout: float = 45):
    """Sends a request. Returns (status, parsed JSON or text); never raises on 4xx/5xx."""
    try:
        with opener(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


async def eventually(fetch, check, timeout: float = 8.0, what: str = "condition"):
    """Poll `fetch()` (sync, run in a thread) until `check(value)` is truthy; return the value."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = await asyncio.to_thread(fetch)
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last value:\n{json.dumps(value, indent=1, default=str)}")
        await asyncio.sleep(0.25)


def transactions(detail: dict) -> list[dict]:
    txs = detail.get("transactions")
    assert isinstance(txs, list), f"charger detail has no transactions list: {detail}"
    return txs


def connector_status(detail: dict, connector_no: int) -> str | None:
    conns = detail.get("connectors")
    assert isinstance(conns, list), f"charger detail has no connectors list: {detail}"
    for c in conns:
        if c.get("connector_no") == connector_no:
            return c.get("status")
    return None


# --------------------------------------------------------------------------------------------
# Independent chargers
# --------------------------------------------------------------------------------------------


class SchemaWatch:
    """Remembers the server's CALLs that broke the official schema (the ocpp package answers them
    with a CALLERROR on its own; `charger()` fails the test for them when it closes)."""

    async def _handle_call(self, msg):
        try:
            return await super()._handle_call(msg)
        except (OcppNotImplemented, OcppNotSupported):
            raise  # an action this test charger does not implement: not the server's fault
        except OCPPError as err:
            self.bad_server_calls.append((msg.action, msg.payload, repr(err)))
            raise


class Charger16(SchemaWatch, Cp16):
    """An OCPP 1.6 charge point that answers the configuration calls a CSMS commonly makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.incoming: list[tuple[str, dict]] = []  # CALLs the server sent us
        self.bad_server_calls: list[tuple] = []

    async def req(self, payload):
        """Send a CALL; a CALLERROR raises (the package's exception for its code)."""
        return await self.call(payload, suppress=False)

    async def boot(self):
        res = await self.req(
            call16.BootNotification(
                charge_point_model="E2E-AC-22",
                charge_point_vendor="ForecourtE2E",
                charge_point_serial_number=f"SN-{self.id}",
                firmware_version="1.2.3",
                meter_type="E2E-MID",
                meter_serial_number=f"M-{self.id}",
            )
        )
        assert res.status == "Accepted", f"BootNotification for {self.id}: {res}"
        return res

    async def status(self, connector_id: int, status: str, error_code: str = "NoError"):
        res = await self.req(
            call16.StatusNotification(
                connector_id=connector_id, error_code=error_code, status=status, timestamp=now_iso()
            )
        )
        assert isinstance(res, result16.StatusNotification)
        return res

    @on(Action16.get_configuration)
    def on_get_configuration(self, key=None, **_):
        self.incoming.append(("GetConfiguration", {"key": key}))
        return result16.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "300"}],
            unknown_key=[k for k in (key or []) if k != "HeartbeatInterval"] or None,
        )

    @on(Action16.change_configuration)
    def on_change_configuration(self, key, value, **_):
        self.incoming.append(("ChangeConfiguration", {"key": key, "value": value}))
        return result16.ChangeConfiguration(status="Accepted")

    @on(Action16.trigger_message)
    def on_trigger_message(self, requested_message, **_):
        self.incoming.append(("TriggerMessage", {"requested_message": requested_message}))
        return result16.TriggerMessage(status="Rejected")

    @on(Action16.set_charging_profile)
    def on_set_charging_profile(self, connector_id, cs_charging_profiles, **_):
        self.incoming.append(("SetChargingProfile", {"connector_id": connector_id,
                                                     "cs_charging_profiles": cs_charging_profiles}))
        return result16.SetChargingProfile(status="Accepted")

    @on(Action16.clear_charging_profile)
    def on_clear_charging_profile(self, **payload):
        self.incoming.append(("ClearChargingProfile", payload))
        return result16.ClearChargingProfile(status="Accepted")


class Charger201(SchemaWatch, Cp201):
    """An OCPP 2.0.1 charging station that answers the device-model calls a CSMS commonly makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.incoming: list[tuple[str, dict]] = []
        self.bad_server_calls: list[tuple] = []

    async def req(self, payload):
        return await self.call(payload, suppress=False)

    async def boot(self, reason: str = "PowerUp"):
        res = await self.req(
            call201.BootNotification(
                charging_station={
                    "model": "E2E-AC-22",
                    "vendorName": "ForecourtE2E",
                    "serialNumber": f"SN-{self.id}",
                    "firmwareVersion": "2.0.1-e2e",
                },
                reason=reason,
            )
        )
        assert res.status == "Accepted", f"BootNotification for {self.id}: {res}"
        return res

    async def status(self, evse_id: int, connector_status: str, connector_id: int = 1):
        res = await self.req(
            call201.StatusNotification(
                timestamp=now_iso(), connector_status=connector_status, evse_id=evse_id, connector_id=connector_id
            )
        )
        assert isinstance(res, result201.StatusNotification)
        return res

    @on(Action201.get_variables)
    def on_get_variables(self, get_variable_data, **_):
        self.incoming.append(("GetVariables", {"get_variable_data": get_variable_data}))
        return result201.GetVariables(
            get_variable_result=[
                {"attribute_status": "UnknownVariable", "component": d["component"], "variable": d["variable"]}
                for d in get_variable_data
            ]
        )

    @on(Action201.set_variables)
    def on_set_variables(self, set_variable_data, **_):
        self.incoming.append(("SetVariables", {"set_variable_data": set_variable_data}))
        return result201.SetVariables(
            set_variable_result=[
                {"attribute_status": "Accepted", "component": d["component"], "variable": d["variable"]}
                for d in set_variable_data
            ]
        )

    @on(Action201.get_base_report)
    def on_get_base_report(self, request_id, report_base, **_):
        self.incoming.append(("GetBaseReport", {"request_id": request_id, "report_base": report_base}))
        return result201.GetBaseReport(status="Rejected")

    @on(Action201.trigger_message)
    def on_trigger_message(self, requested_message, **_):
        self.incoming.append(("TriggerMessage", {"requested_message": requested_message}))
        return result201.TriggerMessage(status="Rejected")

    @on(Action201.set_charging_profile)
    def on_set_charging_profile(self, evse_id, charging_profile, **_):
        self.incoming.append(("SetChargingProfile", {"evse_id": evse_id, "charging_profile": charging_profile}))
        return result201.SetChargingProfile(status="Accepted")

    @on(Action201.clear_charging_profile)
    def on_clear_charging_profile(self, **payload):
        self.incoming.append(("ClearChargingProfile", payload))
        return result201.ClearChargingProfile(status="Accepted")


async def open_ws(server: Server, charger_id: str, version: str, password: str | None = DEMO_CHARGER_PASS,
                  subprotocols: list[str] | None = None):
    headers = {}
    if password is not None:
        headers["Authorization"] = basic_auth(charger_id, password)
    return await ws_connect(
        server.ws_url(charger_id),
        subprotocols=subprotocols if subprotocols is not None else [SUBPROTOCOL[version]],
        additional_headers=headers,
        open_timeout=15,
        max_size=2**22,
    )


async def handshake_status(server: Server, charger_id: str, password: str | None, subprotocols: list[str] | None,
                           user: str | None = None) -> int:
    """Try a handshake that should be refused; return the HTTP status (101 if it was accepted)."""
    headers = {}
    if password is not None:
        headers["Authorization"] = basic_auth(user or charger_id, password)
    try:
        ws = await ws_connect(
            server.ws_url(charger_id),
            subprotocols=subprotocols,
            additional_headers=headers,
            open_timeout=15,
        )
    except InvalidStatus as err:
        return err.response.status_code
    await ws.close()
    return 101


@asynccontextmanager
async def charger(server: Server, charger_id: str, version: str = "1.6", *, cls=None,
                  password: str = DEMO_CHARGER_PASS, boot: bool = True):
    """An independent charger connected to the server, its receive loop running as a task."""
    ws = await open_ws(server, charger_id, version, password)
    assert ws.subprotocol == SUBPROTOCOL[version], f"server chose subprotocol {ws.subprotocol!r}"
    if cls is None:
        cls = Charger16 if version == "1.6" else Charger201
    cp = cls(charger_id, ws, response_timeout=20)
    cp.ws = ws
    loop_task = asyncio.create_task(cp.start(), name=f"cp-{charger_id}")
    cp.loop_task = loop_task
    try:
        if boot:
            await cp.boot()
        yield cp
        bad = getattr(cp, "bad_server_calls", [])
        assert not bad, f"the server sent {charger_id} CALLs that break the OCPP {version} schema: {bad}"
    finally:
        loop_task.cancel()
        with suppress(BaseException):
            await loop_task
        with suppress(Exception):
            await ws.close()


# --------------------------------------------------------------------------------------------
# Raw frames (for what the ocpp package would refuse to send)
# --------------------------------------------------------------------------------------------


class RawCharger:
    """A bare websocket: send any text, read the server's answer frames."""

    def __init__(self, ws, version: str):
        self.ws = ws
        self.version = version
        self.seen: list[str] = []
        self._n = 0

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def next_answer(self, timeout: float = 10.0) -> list:
        """The next CALLRESULT / CALLERROR (or anything not a CALL) from the server.

        CALLs the server makes meanwhile are answered with a CALLERROR so they do not linger."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no answer from the server within {timeout}s; frames seen: {self.seen[-5:]}")
            text = await asyncio.wait_for(self.ws.recv(), left)
            self.seen.append(text)
            try:
                frame = json.loads(text)
            except ValueError as err:
                raise AssertionError(f"server sent a frame that is not JSON: {text!r}") from err
            assert isinstance(frame, list) and frame, f"server sent a frame that is not an OCPP array: {text!r}"
            if frame[0] == 2:
                await self.ws.send(json.dumps([4, frame[1], "NotImplemented", "raw test charger", {}]))
                continue
            return frame

    async def expect_call(self, action: str, timeout: float = 10.0) -> list:
        """The next CALL of `action` from the server. Other CALLs the server makes on its own meanwhile
        (e.g. charging profiles after a boot) are answered with a CALLERROR and skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {action} CALL from the server within {timeout}s; frames seen: {self.seen[-5:]}")
            text = await asyncio.wait_for(self.ws.recv(), left)
            self.seen.append(text)
            frame = json.loads(text)
            if frame[0] == 2 and frame[2] == action:
                return frame
            assert frame[0] == 2, f"unexpected frame while waiting for a {action} CALL: {frame}"
            await self.ws.send(json.dumps([4, frame[1], "NotImplemented", "raw test charger", {}]))

    async def call(self, action: str, payload, timeout: float = 10.0) -> list:
        """A CALL as given (no checks on the way out); a CALLRESULT answer is checked against the
        official response schema, as the ocpp package would."""
        self._n += 1
        msg_id = f"raw-{self._n}-{uuid.uuid4().hex[:6]}"
        await self.send(json.dumps([2, msg_id, action, payload]))
        frame = await self.next_answer(timeout)
        assert frame[1] == msg_id, f"answer to {msg_id} carries id {frame[1]!r}: {frame}"
        if frame[0] == 3:
            errors = [e.message for e in get_validator(3, action, self.version).iter_errors(frame[2])]
            assert not errors, f"{action} response breaks the OCPP {self.version} schema: {errors}: {frame}"
        return frame

    async def heartbeat_ok(self) -> None:
        frame = await self.call("Heartbeat", {})
        assert frame[0] == 3, f"Heartbeat after a bad frame was not answered with a CALLRESULT: {frame}"
        assert_recent(frame[2]["currentTime"])


@asynccontextmanager
async def raw_charger(server: Server, charger_id: str, version: str, password: str = DEMO_CHARGER_PASS):
    ws = await open_ws(server, charger_id, version, password)
    assert ws.subprotocol == SUBPROTOCOL[version]
    try:
        yield RawCharger(ws, version)
    finally:
        with suppress(Exception):
            await ws.close()


# --------------------------------------------------------------------------------------------
# Meter values
# --------------------------------------------------------------------------------------------

PHASES = ("L1", "L2", "L3")


def meter_value_16(ts: str, energy_wh: int, context: str = "Sample.Periodic", *, power_w=(3680, 3650, 3710),
                   current_a=(16.0, 15.9, 16.1), voltage_v=(230.1, 229.8, 231.0), soc: int | None = 42) -> dict:
    """One 1.6 MeterValue: energy register, power/current/voltage per phase and the EV's SoC."""
    sv = [{"value": str(energy_wh), "context": context, "format": "Raw",
           "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"}]
    for ph, p in zip(PHASES, power_w):
        sv.append({"value": f"{p}", "context": context, "measurand": "Power.Active.Import", "phase": ph, "unit": "W"})
    for ph, a in zip(PHASES, current_a):
        sv.append({"value": f"{a:.1f}", "context": context, "measurand": "Current.Import", "phase": ph, "unit": "A"})
    for ph, v in zip(PHASES, voltage_v):
        sv.append({"value": f"{v:.1f}", "context": context, "measurand": "Voltage", "phase": f"{ph}-N", "unit": "V"})
    if soc is not None:
        sv.append({"value": str(soc), "context": context, "measurand": "SoC", "location": "EV", "unit": "Percent"})
    return {"timestamp": ts, "sampledValue": sv}


def meter_value_201(ts: str, energy_wh: float, context: str = "Sample.Periodic", *, power_w=(3680, 3650, 3710),
                    current_a=(16.0, 15.9, 16.1), voltage_v=(230.1, 229.8, 231.0), soc: int | None = 42,
                    full: bool = True) -> dict:
    sv = [{"value": energy_wh, "context": context, "measurand": "Energy.Active.Import.Register",
           "location": "Outlet", "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}]
    if full:
        for ph, p in zip(PHASES, power_w):
            sv.append({"value": p, "context": context, "measurand": "Power.Active.Import", "phase": ph,
                       "unitOfMeasure": {"unit": "W"}})
        for ph, a in zip(PHASES, current_a):
            sv.append({"value": a, "context": context, "measurand": "Current.Import", "phase": ph,
                       "unitOfMeasure": {"unit": "A"}})
        for ph, v in zip(PHASES, voltage_v):
            sv.append({"value": v, "context": context, "measurand": "Voltage", "phase": f"{ph}-N",
                       "unitOfMeasure": {"unit": "V"}})
        if soc is not None:
            sv.append({"value": soc, "context": context, "measurand": "SoC", "location": "EV",
                       "unitOfMeasure": {"unit": "Percent"}})
    return {"timestamp": ts, "sampledValue": sv}
