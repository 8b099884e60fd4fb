"""A soak of the OCPP endpoint: honest chargers doing what chargers do (a heartbeat and a meter
reading a second each) beside one that misbehaves in every way a stranger can (huge frames, a
message flood, ever-new connector numbers, garbage), and what it costs the honest ones.

As a test (test_soak.py), a short run checks that nothing honest is lost and the misbehaving
charger is contained. On demand, for the benchmark in docs/benchmarks.md:

    FORECOURT_BIN=target/debug/forecourt .venv/bin/python end2end/ocpp/soak.py --honest 100 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ocpp_kit import Server, now_iso, open_ws  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

PASSWORD = "soak-charger-password"


@dataclass
class Honest:
    """What one honest charger saw."""

    latencies_ms: list[float] = field(default_factory=list)
    sent: int = 0
    answered: int = 0
    errors: list[str] = field(default_factory=list)
    meter_values_sent: int = 0


class Link:
    """A raw OCPP 1.6 link: our CALLs answered in order, the server's CALLs answered with `{}`."""

    def __init__(self, ws):
        self.ws = ws
        self.pending: dict[str, asyncio.Future] = {}
        self.next_id = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        with suppress(ConnectionClosed, asyncio.CancelledError):
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg[0] == 2:
                    await self.ws.send(json.dumps([3, msg[1], {}]))
                elif msg[1] in self.pending:
                    self.pending.pop(msg[1]).set_result(msg)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("link closed"))

    async def call(self, action: str, payload: dict, timeout: float = 30) -> list:
        self.next_id += 1
        mid = f"m{self.next_id}"
        fut = asyncio.get_running_loop().create_future()
        self.pending[mid] = fut
        await self.ws.send(json.dumps([2, mid, action, payload]))
        return await asyncio.wait_for(fut, timeout)

    async def close(self):
        self.reader.cancel()
        with suppress(BaseException):
            await self.reader
        with suppress(Exception):
            await self.ws.close()


def meter_values(wh: int) -> dict:
    return {
        "connectorId": 1,
        "meterValue": [{"timestamp": now_iso(), "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}],
    }


async def honest_charger(server: Server, cid: str, stop_at: float, seen: Honest, ready: asyncio.Event) -> None:
    link = Link(await open_ws(server, cid, "1.6", PASSWORD))
    try:
        boot = await link.call("BootNotification", {"chargePointVendor": "Soak", "chargePointModel": "Honest"})
        assert boot[0] == 3, boot
        await link.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
        ready.set()
        wh = 0
        while time.monotonic() < stop_at:
            for action, payload in (("Heartbeat", {}), ("MeterValues", meter_values(wh))):
                started = time.monotonic()
                seen.sent += 1
                try:
                    answer = await link.call(action, payload)
                except Exception as err:  # noqa: BLE001 (every failure is the finding)
                    seen.errors.append(f"{action}: {err!r}")
                    continue
                if answer[0] == 3:
                    seen.answered += 1
                    seen.latencies_ms.append((time.monotonic() - started) * 1000)
                    if action == "MeterValues":
                        seen.meter_values_sent += 1
                else:
                    seen.errors.append(f"{action}: {answer}")
            wh += 10
            await asyncio.sleep(1.0)
    finally:
        await link.close()


@dataclass
class Misbehaviour:
    huge_frames_closed: int = 0
    flood_sent: int = 0
    flood_answered: int = 0
    new_connectors_refused: int = 0


async def misbehaving_charger(server: Server, cid: str, stop_at: float, seen: Misbehaviour) -> None:
    async def connect() -> Link:
        link = Link(await open_ws(server, cid, "1.6", PASSWORD))
        await link.call("BootNotification", {"chargePointVendor": "Soak", "chargePointModel": "Rogue"})
        return link

    link = await connect()
    try:
        while time.monotonic() < stop_at:
            # A frame far past the size limit: the server closes the link (1009); we come back.
            with suppress(ConnectionClosed):
                await link.ws.send("[2,\"big\",\"DataTransfer\",{\"vendorId\":\"x\",\"data\":\"" + "A" * (2 << 20) + "\"}]")
            # The link's reader ends when the server closes it.
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(link.reader), 10)
                if link.ws.close_code == 1009:
                    seen.huge_frames_closed += 1
            await link.close()
            link = await connect()
            # Connector numbers past the limit: refused, the link stays.
            for n in range(17, 27):
                answer = await link.call("StatusNotification", {"connectorId": n, "errorCode": "NoError", "status": "Available"})
                if answer[0] == 4:
                    seen.new_connectors_refused += 1
            # Garbage.
            for junk in ["not json at all", "[9,\"x\"]", "{\"a\":1}", "[2,\"g1\"]", "[2,\"g2\",\"Heartbeat\",[]]"]:
                await link.ws.send(junk)
            # A flood: as fast as the socket takes them, answered at the server's pace.
            futures = []
            for _ in range(200):
                link.next_id += 1
                mid = f"f{link.next_id}"
                fut = asyncio.get_running_loop().create_future()
                link.pending[mid] = fut
                await link.ws.send(json.dumps([2, mid, "Heartbeat", {}]))
                futures.append(fut)
                seen.flood_sent += 1
            for fut in futures:
                with suppress(Exception):
                    if (await asyncio.wait_for(fut, max(1.0, stop_at - time.monotonic() + 30)))[0] == 3:
                        seen.flood_answered += 1
    finally:
        await link.close()


def stored_meter_values(data_dir: Path, prefix: str) -> int:
    with sqlite3.connect(f"file:{data_dir / 'forecourt.db'}?mode=ro", uri=True, timeout=30) as db:
        return db.execute("SELECT COUNT(*) FROM meter_values WHERE charger_id LIKE ?", (prefix + "%",)).fetchone()[0]


async def soak(server: Server, honest: int, seconds: float, misbehave: bool, prefix: str) -> dict:
    stop_at = time.monotonic() + seconds
    seen = [Honest() for _ in range(honest)]
    readies = [asyncio.Event() for _ in range(honest)]
    tasks = []
    for i in range(honest):
        tasks.append(asyncio.create_task(honest_charger(server, f"{prefix}{i:03d}", stop_at, seen[i], readies[i])))
        await asyncio.sleep(0.02)  # chargers arrive over a few seconds, as after an outage
    rogue = Misbehaviour()
    if misbehave:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
        tasks.append(asyncio.create_task(misbehaving_charger(server, f"{prefix}BAD", stop_at, rogue)))
    await asyncio.gather(*tasks)
    latencies = sorted(ms for s in seen for ms in s.latencies_ms)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")  # noqa: E731
    return {
        "honest": honest,
        "seconds": seconds,
        "misbehaving": misbehave,
        "sent": sum(s.sent for s in seen),
        "answered": sum(s.answered for s in seen),
        "errors": [e for s in seen for e in s.errors],
        "meter_values_sent": sum(s.meter_values_sent for s in seen),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(p(0.99), 1),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "rogue": rogue.__dict__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--honest", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server("sqlite", Path(tmp) / "data", None)
        # Every charger here comes from 127.0.0.1: raise the per-address limit on new chargers.
        server.extra_args = ["--new-chargers-per-address", "1000"]
        server.start()
        try:
            for misbehave, prefix in ((False, "CALM-"), (True, "SOAK-")):
                result = asyncio.run(soak(server, args.honest, args.seconds, misbehave, prefix))
                result["meter_values_stored"] = stored_meter_values(server.data_dir, prefix) - 0
                errors = result.pop("errors")
                print(json.dumps(result), flush=True)
                for e in errors[:10]:
                    print("  error:", e)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
