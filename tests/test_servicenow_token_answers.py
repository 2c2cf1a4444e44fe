"""A token endpoint that answers without a usable token is an outage of ServiceNow, said so,
not an unexpected error; credentials missing a basic-auth field are a secret problem."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, List

import pytest
from conftest import new_secret

from agent.credentials import Credentials
from agent.errors import SecretError
from agent.servicenow.client import TOKEN_PATH, TableClient, Unavailable


class TokenEndpoint(BaseHTTPRequestHandler):
    """Answers every token request with ``answer``; records every path asked for."""

    answer: Any = {}
    paths: List[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        TokenEndpoint.paths.append(self.path)
        body = json.dumps(TokenEndpoint.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        TokenEndpoint.paths.append(self.path)
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def token_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenEndpoint)
    TokenEndpoint.paths = []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:{}".format(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("token", [None, 12345, "", ["a", "b"], {"value": "x"}])
def test_a_token_that_is_not_a_string_is_an_unavailable_servicenow(token_server, token):
    TokenEndpoint.answer = {"access_token": token, "expires_in": 1800}
    creds = Credentials("oauth", client_id="edge", client_secret=new_secret())
    client = TableClient(token_server, lambda: creds, timeout=5.0)
    with pytest.raises(Unavailable, match="answered without a token"):
        client.read("0123456789abcdef0123456789abcdef")
    # Nothing was asked of the Table API with a broken bearer header.
    assert TokenEndpoint.paths == [TOKEN_PATH]


def test_a_string_token_is_used(token_server):
    TokenEndpoint.answer = {"access_token": "tok-" + new_secret(), "expires_in": 1800}
    creds = Credentials("oauth", client_id="edge", client_secret=new_secret())
    client = TableClient(token_server, lambda: creds, timeout=5.0)
    with pytest.raises(Unavailable):  # the table answers 500
        client.read("0123456789abcdef0123456789abcdef")
    assert TokenEndpoint.paths[0] == TOKEN_PATH and TokenEndpoint.paths[1].startswith("/api/now/")


@pytest.mark.parametrize("missing", ["username", "password"])
def test_basic_credentials_without_a_user_or_password_are_a_secret_error(missing):
    fields = {"username": "edge-integration", "password": new_secret()}
    fields[missing] = None
    client = TableClient("http://127.0.0.1:9", lambda: Credentials("basic", **fields))
    with pytest.raises(SecretError, match="basic auth needs a username and a password"):
        client.read("0123456789abcdef0123456789abcdef")
