"""OCPP security profile 2: HTTP Basic auth over TLS, with the server terminating TLS itself.

Covers OCTT's security-profile-2 connection cases for a CSMS: a charger that trusts our certificate
connects over wss:// with its password and is served; a wrong password is refused even over TLS;
a plain ws:// connection to the TLS port gets no OCPP at all.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
import websockets

from ocpp_kit import DEMO_CHARGER_PASS, Server, basic_auth, run


class TlsServer(Server):
    def __init__(self, data_dir: Path, cert: Path, key: Path):
        super().__init__("sqlite", data_dir, None)
        self.cert, self.key = cert, key

    def argv(self) -> list[str]:
        return super().argv() + ["--tls-cert", str(self.cert), "--tls-key", str(self.key)]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    server = TlsServer(root / "data", cert, key)
    server.start()
    yield server
    server.stop()


def context(server: TlsServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.cert))


def test_the_server_announces_and_serves_https(tls_server):
    assert tls_server.base_url.startswith("https://")
    with urllib.request.urlopen(f"{tls_server.base_url}/healthz", context=context(tls_server), timeout=10) as res:
        assert res.status == 200
        assert res.read() == b"ok"


def test_a_charger_boots_over_wss_with_basic_auth(tls_server):
    async def scenario():
        url = f"wss://127.0.0.1:{tls_server.port}/ocpp/FM-CAM-01"
        headers = {"Authorization": basic_auth("FM-CAM-01", DEMO_CHARGER_PASS)}
        async with websockets.connect(url, ssl=context(tls_server), subprotocols=["ocpp1.6"], additional_headers=headers) as ws:
            assert ws.subprotocol == "ocpp1.6"
            await ws.send(json.dumps([2, "b1", "BootNotification", {"chargePointVendor": "TLS", "chargePointModel": "P2"}]))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer[0] == 3 and answer[1] == "b1"
            assert answer[2]["status"] == "Accepted"

    run(scenario())


def test_a_wrong_password_is_refused_over_tls_too(tls_server):
    async def scenario():
        url = f"wss://127.0.0.1:{tls_server.port}/ocpp/FM-CAM-01"
        headers = {"Authorization": basic_auth("FM-CAM-01", "not-the-password")}
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url, ssl=context(tls_server), subprotocols=["ocpp1.6"], additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401

    run(scenario())


def test_plain_websocket_to_the_tls_port_gets_no_ocpp(tls_server):
    async def scenario():
        url = f"ws://127.0.0.1:{tls_server.port}/ocpp/FM-CAM-01"
        headers = {"Authorization": basic_auth("FM-CAM-01", DEMO_CHARGER_PASS)}
        with pytest.raises((websockets.exceptions.InvalidHandshake, websockets.exceptions.InvalidMessage, ConnectionError, EOFError, OSError)):
            async with websockets.connect(url, subprotocols=["ocpp1.6"], additional_headers=headers, open_timeout=10):
                pass

    run(scenario())
