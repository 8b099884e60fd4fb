"""Mail to people through a real SMTP server (aiosmtpd): a forgotten password is reset by the
link mailed to the account, and an invited person chooses a password through theirs. The server is
started with --smtp-url pointing at a local aiosmtpd that keeps what it receives."""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from ocpp_kit import Server

LINK_RE = re.compile(r"(https?://\S+/set-password/[A-Za-z0-9_-]+)")


class Inbox:
    """An aiosmtpd handler keeping every message it is given."""

    def __init__(self):
        self.messages: list[Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        message = message_from_bytes(envelope.content)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 Message accepted for delivery"

    def wait_for(self, to: str, timeout: float = 20) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if to in m["X-Envelope-To"]:
                    return m
            time.sleep(0.1)
        raise AssertionError(f"no mail to {to} within {timeout}s; got {[m['To'] for m in self.messages]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mail_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def server(mail_server, tmp_path_factory):
    controller, _ = mail_server
    srv = Server("sqlite", tmp_path_factory.mktemp("mail") / "data", None)
    srv.extra_args = [
        "--smtp-url", f"smtp://127.0.0.1:{controller.port}",
        "--mail-from", "Forecourt <no-reply@forecourt.test>",
    ]
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


def server_fn(srv: Server, name: str, form: dict) -> tuple[int, str, str | None]:
    """Calls a server function as a browser form would: (status, body, the cookie it set)."""
    req = urllib.request.Request(
        f"{srv.base_url}/api/{name}",
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as res:
            return res.status, res.read().decode(), res.headers.get("Set-Cookie")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), err.headers.get("Set-Cookie")


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(message.get_payload())


def test_a_forgotten_password_is_reset_through_the_mailed_link(server, mail_server):
    _, inbox = mail_server
    email = "operator@forecourt.local"
    # Asking for an email with no account answers the same, and sends nothing.
    status, body, _ = server_fn(server, "request_password_reset", {"email": "nobody@nowhere.example"})
    assert status == 200, body
    status, body, _ = server_fn(server, "request_password_reset", {"email": email})
    assert status == 200, body
    mail = inbox.wait_for(email)
    assert mail["Subject"] == "Reset your Forecourt password"
    assert "no-reply@forecourt.test" in mail["From"]
    assert not any("nobody@nowhere.example" in m["X-Envelope-To"] for m in inbox.messages)
    link = LINK_RE.search(body_of(mail)).group(1)
    assert link.startswith(server.base_url), link

    # The link opens a page with the form; the password is set once, then the link is spent.
    with urllib.request.urlopen(link, timeout=30) as page:
        assert page.status == 200
        assert "Choose your password" in page.read().decode()
    token = link.rsplit("/", 1)[1]
    new = {"token": token, "password": "a-brand-new-passphrase", "confirm": "a-brand-new-passphrase"}
    status, body, _ = server_fn(server, "set_password", new)
    assert status == 200, body
    status, body, _ = server_fn(server, "set_password", new)
    assert status == 410, body

    # The old password is gone; the new one signs in.
    status, _, _ = server_fn(server, "sign_in", {"email": email, "password": "demo-operator-pass"})
    assert status == 401
    status, body, cookie = server_fn(server, "sign_in", {"email": email, "password": "a-brand-new-passphrase"})
    assert status in (200, 302, 303), body
    assert cookie and cookie.startswith("forecourt_session="), cookie


def test_an_invitation_is_mailed_and_its_link_makes_the_account_usable(server, mail_server):
    _, inbox = mail_server
    status, invited = server.http("POST", "/api/v1/users", {"email": "cashier@freshmart.example", "role": "retailer_viewer", "retailer_id": 1})
    assert status == 201, invited
    assert invited["mailed"] is True, invited
    mail = inbox.wait_for("cashier@freshmart.example")
    assert mail["Subject"] == "You are invited to Forecourt"
    text = body_of(mail)
    assert "Retailer viewer" in text and "token:demo operator" in text, text
    link = LINK_RE.search(text).group(1)
    assert link == invited["invite_url"]
    token = link.rsplit("/", 1)[1]
    status, body, _ = server_fn(server, "set_password", {"token": token, "password": "till-roll-and-coffee", "confirm": "till-roll-and-coffee"})
    assert status == 200, body
    status, body, cookie = server_fn(server, "sign_in", {"email": "cashier@freshmart.example", "password": "till-roll-and-coffee"})
    assert status in (200, 302, 303) and cookie, body
