#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Who may call what over HTTP, and the listener for other machines:
- every class of route: public (health, metrics, name) for anyone; POS paths, while a POS token is
  configured, 401 with WWW-Authenticate: Bearer without a token or with a wrong one, allowed with the POS or
  the admin token; administrative paths 401 without a token, 403 with the POS token, allowed with the admin
  token, and 403 for everyone while no admin token is configured;
- a refused POST is answered before its body is sent; tokens never reach the log;
- TLS with a CA made here: Python's ssl and curl get TLS 1.2 and 1.3, TLS 1.1 and 1.0 are refused, a client
  trusting another CA refuses the server, plain HTTP gets nothing;
- a listener on anything but loopback is refused before it is bound, with a message naming the keys, unless
  TLS and a POS token are configured or AllowInsecure=yes. Nothing here listens on anything but loopback:
  the addresses refused are from TEST-NET (this machine has none), a passed socket on the wildcard is
  bound but never listening.
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from kkttest import Daemon, check, read_response, run_tests, sample_receipt  # noqa: E402

CONFIG = ("[Heartbeat]\nURL=http://127.0.0.1:9/hb\n[OFD]\nURL=http://127.0.0.1:9\n[Bus]\nAddress=none\n"
          "[Device]\nPrintLatencyMin=0\nPrintLatencyMax=0\n[Adapter]\nLogLevel=debug\n")
POS_TOKEN = "pos-7Hq2-test-token"
WRONG_TOKEN = "not-the-token-9c1e"

PUBLIC = [("GET", "/", None), ("GET", "/health", None), ("GET", "/v1/health", None), ("GET", "/metrics", None)]


def pos_routes(receipt_id):
    return [
        ("GET", f"/v1/kkt/receipt/{receipt_id}", None),
        ("GET", "/v1/kkt/buffer/status", None),
        ("GET", "/v1/kkt/heartbeat/status", None),
        ("GET", "/v1/kkt/device/status", None),
        ("GET", "/v1/kkt/worker/status", None),
        ("GET", "/v1/kkt/shift", None),
        ("POST", "/v1/pos/refund", {"original_fiscal_doc_id": receipt_id}),
        ("POST", "/v1/kkt/shift/open", b""),
        ("POST", "/v1/kkt/report/x", b""),
    ]


def admin_routes(receipt_id):
    return [
        ("POST", "/v1/kkt/buffer/sync", b""),
        ("GET", "/v1/kkt/dlq", None),
        ("POST", f"/v1/kkt/dlq/{receipt_id}/retry", b""),
        ("POST", f"/v1/kkt/dlq/{receipt_id}/resolve", {"note": "handled"}),
        ("POST", "/v1/kkt/circuit_breaker/reset", b""),
        ("POST", f"/v1/kkt/receipt/{receipt_id}/retry", b""),
        ("POST", f"/v1/kkt/receipt/{receipt_id}/cancel", {"note": "why"}),
        ("GET", "/v1/kkt/receipts/rejected", None),
        ("POST", "/v1/kkt/debug/device/fault", {"fault": "none"}),
    ]


def expect_refused(d, method, path, body, token, status, error=None, detail=None):
    got, headers, answer = d.request(method, path, body, token=token)
    check(got == status, f"{method} {path} with {token and token[:3]}...: {got} {answer}, expected {status}")
    check(isinstance(answer, dict) and answer.get("detail"), f"{method} {path}: no JSON detail: {answer}")
    if detail:
        check(detail in answer["detail"], f"{method} {path}: {answer['detail']!r} lacks {detail!r}")
    challenge = headers.get("www-authenticate")
    if status == 401:
        check(challenge and challenge.startswith("Bearer"), f"{method} {path}: 401 without a Bearer challenge")
    if error:
        check(challenge and f'error="{error}"' in challenge, f"{method} {path}: challenge {challenge!r}")


def expect_allowed(d, method, path, body, token):
    got, _, answer = d.request(method, path, body, token=token)
    # Allowed: whatever the operation answers (409 for a receipt not in the dead-letter queue, ...), never
    # a refusal of the caller.
    check(got not in (401, 403) and got < 500, f"{method} {path} refused or failed: {got} {answer}")
    return got


def submit(d, key, token):
    status, _, answer = d.post_receipt(sample_receipt(), key, token=token)
    check(status == 200, f"receipt: {status} {answer}")
    return answer["receipt_id"]


def test_each_class_of_route_with_a_pos_and_an_admin_token():
    with Daemon(CONFIG, pos_token=POS_TOKEN) as d:
        d.start()
        admin = d.admin_token

        # Nothing is stored for a caller without the right token.
        expect_refused(d, "POST", "/v1/kkt/receipt", sample_receipt(), None, 401)
        expect_refused(d, "POST", "/v1/kkt/receipt", sample_receipt(), WRONG_TOKEN, 401, error="invalid_token")
        status, _, buffer = d.request("GET", "/v1/kkt/buffer/status", token=POS_TOKEN)
        check(status == 200 and buffer["total_receipts"] == 0, f"stored without a token: {buffer}")
        receipt_id = submit(d, "access-1", POS_TOKEN)
        submit(d, "access-2", admin)  # the admin token allows what the POS token allows

        for method, path, body in PUBLIC:
            for token in (None, WRONG_TOKEN, POS_TOKEN, admin):
                expect_allowed(d, method, path, body, token)
        for method, path, body in pos_routes(receipt_id):
            expect_refused(d, method, path, body, None, 401)
            expect_refused(d, method, path, body, WRONG_TOKEN, 401, error="invalid_token")
            expect_allowed(d, method, path, body, POS_TOKEN)
            expect_allowed(d, method, path, body, admin)
        for method, path, body in admin_routes(receipt_id):
            expect_refused(d, method, path, body, None, 401, detail="admin token")
            expect_refused(d, method, path, body, WRONG_TOKEN, 401, error="invalid_token")
            expect_refused(d, method, path, body, POS_TOKEN, 403, error="insufficient_scope",
                           detail="needs the admin token")
            expect_allowed(d, method, path, body, admin)
        # The Z report closes the shift: the cashier's, as on the bus.
        expect_refused(d, "POST", "/v1/kkt/report/z", b"", None, 401)
        check(expect_allowed(d, "POST", "/v1/kkt/report/z", b"", POS_TOKEN) == 200, "Z report with the POS token")

        # The scheme is case-insensitive; another scheme is no token.
        status, _, _ = d.request("GET", "/v1/kkt/shift", token=None,
                                 headers={"Authorization": f"bearer   {POS_TOKEN}  "})
        check(status == 200, f"lower-case scheme with spaces: {status}")
        status, headers, _ = d.request("GET", "/v1/kkt/shift", token=None,
                                       headers={"Authorization": f"Basic {POS_TOKEN}"})
        check(status == 401 and "invalid_token" not in headers.get("www-authenticate", ""),
              f"Basic scheme: {status} {headers}")

        d.stop_clean()
        log = d.log_text()
        for secret in (admin, POS_TOKEN, WRONG_TOKEN):
            check(secret not in log, "a token is in the log")
        check("refused /v1/kkt/receipt from 127.0.0.1 with 401" in log, "refusals are not logged")


def test_without_a_pos_token_pos_paths_are_open_and_admin_paths_need_the_admin_token():
    with Daemon(CONFIG) as d:
        d.start()
        receipt_id = submit(d, "open-1", None)
        for method, path, body in pos_routes(receipt_id):
            expect_allowed(d, method, path, body, None)
            expect_allowed(d, method, path, body, WRONG_TOKEN)
        for method, path, body in admin_routes(receipt_id):
            expect_refused(d, method, path, body, None, 401)
            expect_allowed(d, method, path, body, d.admin_token)
        d.stop_clean()


def test_without_an_admin_token_admin_paths_are_closed_to_everyone():
    with Daemon(CONFIG, admin_token=None, pos_token=POS_TOKEN) as d:
        d.start()
        receipt_id = submit(d, "closed-1", POS_TOKEN)
        for method, path, body in admin_routes(receipt_id):
            for token in (None, POS_TOKEN, WRONG_TOKEN):
                expect_refused(d, method, path, body, token, 403, detail="[HTTP] AdminToken=")
        d.stop_clean()


def test_a_refused_post_is_answered_before_its_body():
    with Daemon(CONFIG, pos_token=POS_TOKEN) as d:
        d.start()
        for path in ("/v1/kkt/receipt", "/v1/kkt/buffer/sync"):
            s = d.connect()
            try:
                # A large body announced, none sent: the answer must not wait for it.
                s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\n"
                          "Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n".encode())
                r = read_response(s, timeout=5)
            finally:
                s.close()
            check(r is not None and r[0] == 401, f"{path}: {r}")
            check(r[1].get("connection") == "close", f"{path}: the connection stays open: {r[1]}")
        d.stop_clean()


def test_the_same_token_for_pos_and_admin_is_refused():
    with Daemon(CONFIG, admin_token="same-token-1", pos_token="same-token-1") as d:
        d.start(wait_ready=False)
        rc = d.proc.wait(timeout=20)
        check(rc == 1, f"exit code {rc}")
        check("PosToken= and AdminToken= hold the same token" in d.log_text(), d.log_text())
        check("same-token-1" not in d.log_text(), "the token is in the log")


# TLS -------------------------------------------------------------------------------------------------------

def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}")


def make_ca(tmp, name):
    """A throwaway CA and a certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    d = os.path.join(tmp, name)
    os.mkdir(d)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            f"/CN=kkt-adapter test CA {name}", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext", cwd=d)
    read = lambda n: open(os.path.join(d, n)).read()  # noqa: E731
    return os.path.join(d, "ca.pem"), read("server.pem"), read("server.key")


def client_context(cafile, version=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile)
    if version is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # Let this client offer the old versions at all (OpenSSL's default level refuses them itself),
            # so that a refusal is the server's.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = version
            ctx.maximum_version = version
    return ctx


def handshake(port, ctx):
    """The negotiated version, or the exception."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                return t.version()
    except (ssl.SSLError, OSError) as e:
        return e


def with_tls(fn):
    def run():
        if not shutil.which("openssl"):
            print("needs openssl (tools/install-deps.sh installs it)", file=sys.stderr)
            sys.exit(77)
        tmp = tempfile.mkdtemp(prefix="kkt-tls-")
        try:
            ca, cert, key = make_ca(tmp, "good")
            other_ca, _, _ = make_ca(tmp, "other")
            with Daemon(CONFIG, pos_token=POS_TOKEN,
                        credentials={"tls-certificate": cert, "tls-key": key}) as d:
                d.start()
                fn(d, ca, other_ca)
                d.stop_clean()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    run.__name__ = fn.__name__
    return run


@with_tls
def test_tls_serves_1_2_and_1_3_and_refuses_older(d, ca, other_ca):
    check("Serving HTTPS on 127.0.0.1:" in d.log_text(), "the start does not say TLS")
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        got = handshake(d.port, client_context(ca, version))
        check(got == name, f"{name}: {got!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1)
    for version in old:
        got = handshake(d.port, client_context(ca, version))
        check(isinstance(got, Exception), f"{version!r} was accepted: {got}")
    # HTTP over it, with the tokens as over plain HTTP.
    ctx = client_context(ca)
    status, _, body = d.request("GET", "/v1/kkt/buffer/status", context=ctx, token=POS_TOKEN)
    check(status == 200 and "total_receipts" in body, f"over TLS: {status} {body}")
    status, headers, _ = d.request("GET", "/v1/kkt/buffer/status", context=ctx, token=None)
    check(status == 401 and headers.get("www-authenticate", "").startswith("Bearer"), f"no token: {status}")
    # A receipt: its request waits (suspended) for the commit and the print, then answers over TLS.
    status, _, answer = d.request("POST", "/v1/kkt/receipt", sample_receipt(), {"Idempotency-Key": "tls-1"},
                                  context=ctx, token=POS_TOKEN)
    check(status == 200 and answer["status"] == "printed", f"receipt over TLS: {status} {answer}")


@with_tls
def test_tls_client_trusting_another_ca_refuses_the_server(d, ca, other_ca):
    got = handshake(d.port, client_context(other_ca))
    check(isinstance(got, ssl.SSLCertVerificationError), f"another CA: {got!r}")
    # The listener is still fine for the right client afterwards.
    check(handshake(d.port, client_context(ca)) in ("TLSv1.2", "TLSv1.3"), "right CA after a refused one")


@with_tls
def test_tls_with_curl(d, ca, other_ca):
    if not shutil.which("curl"):
        return
    url = f"https://127.0.0.1:{d.port}/v1/kkt/shift"
    base = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{ssl_verify_result}", "--max-time", "20"]
    r = subprocess.run(base + ["--cacert", ca, "-H", f"Authorization: Bearer {POS_TOKEN}", url],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.startswith("200 "), f"curl with the CA: {r.returncode} {r.stdout} {r.stderr}")
    r = subprocess.run(base + ["--cacert", ca, url], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.startswith("401 "), f"curl without a token: {r.stdout} {r.stderr}")
    r = subprocess.run(base + ["--cacert", other_ca, url], capture_output=True, text=True, timeout=30)
    check(r.returncode == 60, f"curl trusting another CA: exit {r.returncode} {r.stderr}")
    r = subprocess.run(base + ["--cacert", ca, "--tlsv1.2", "--tls-max", "1.2", url, "-H",
                               f"Authorization: Bearer {POS_TOKEN}"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.startswith("200 "), f"curl with TLS 1.2: {r.stdout} {r.stderr}")


@with_tls
def test_plain_http_to_the_tls_listener_gets_no_answer(d, ca, other_ca):
    s = d.connect()
    try:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(s, timeout=5)
    finally:
        s.close()
    check(r is None, f"plain HTTP got an answer: {r}")


def test_tls_needs_both_the_certificate_and_the_key():
    tmp = tempfile.mkdtemp(prefix="kkt-tls-")
    try:
        _, cert, key = make_ca(tmp, "half")
        with Daemon(CONFIG, credentials={"tls-certificate": cert}) as d:
            d.start(wait_ready=False)
            check(d.proc.wait(timeout=20) == 1, "started with a certificate and no key")
            check("TLS needs both a certificate and its key" in d.log_text(), d.log_text())
        with Daemon(CONFIG, credentials={"tls-certificate": cert, "tls-key": key}) as d:
            os.chmod(os.path.join(d.credentials_dir, "tls-key"), 0o644)
            d.start(wait_ready=False)
            check(d.proc.wait(timeout=20) == 1, "started with a key readable by everyone")
            check("[HTTP] TLSKey= (credential tls-key)" in d.log_text(), d.log_text())
            check("PRIVATE KEY" not in d.log_text(), "the key is in the log")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# the listener for other machines ---------------------------------------------------------------------------

def refused_start(config, listener=None, **kw):
    """Starts the daemon, expects exit code 1, returns its log."""
    with Daemon(config, socket_activation=listener is not None, **kw) as d:
        if listener is not None:
            d.listener = listener
            d.port = listener.getsockname()[1]
        d.start(wait_ready=False)
        rc = d.proc.wait(timeout=20)
        log = d.log_text()
        check(rc == 1, f"exit code {rc}; log:\n{log}")
        return log


def address_is_local(address):
    """Whether this machine has the address (bind only; nothing listens)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((address, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_a_non_loopback_listen_address_is_refused_before_it_is_bound():
    for address, listen in (("192.0.2.1", "192.0.2.1:8000"), ("2001:db8::1", "[2001:db8::1]:8000")):
        if address_is_local(address):
            print(f"{address} is an address of this machine; skipping it", file=sys.stderr)
            continue
        log = refused_start(CONFIG + f"[HTTP]\nListen={listen}\n")
        check(f"Refusing to serve HTTP on {listen}: it is not a loopback address and neither TLS nor a POS token "
              "is configured" in log, log)
        for key in ("[HTTP] TLSCertificate= and TLSKey=", "[HTTP] PosToken=", "[HTTP] AllowInsecure=yes"):
            check(key in log, f"the message does not name {key}: {log}")
        # Refused before the socket: had it tried to bind, this machine would have said it has no such address.
        check("Failed to listen" not in log, f"it tried to bind {listen}: {log}")

        log = refused_start(CONFIG + f"[HTTP]\nListen={listen}\n", pos_token=POS_TOKEN)
        check("it is not a loopback address and TLS is not configured" in log, log)

        # With the risk accepted (or TLS and a POS token), the address is tried: this machine does not have it.
        log = refused_start(CONFIG + f"[HTTP]\nListen={listen}\nAllowInsecure=yes\n")
        check("AllowInsecure=yes" in log and f"Failed to listen on {listen}" in log, log)
        check("Refusing" not in log, log)


def test_tls_and_a_pos_token_let_a_non_loopback_address_through():
    if address_is_local("192.0.2.1"):
        return
    tmp = tempfile.mkdtemp(prefix="kkt-tls-")
    try:
        _, cert, key = make_ca(tmp, "lan")
        log = refused_start(CONFIG + "[HTTP]\nListen=192.0.2.1:8000\n", pos_token=POS_TOKEN,
                            credentials={"tls-certificate": cert, "tls-key": key})
        check("Refusing" not in log and "Failed to listen on 192.0.2.1:8000" in log, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_passed_socket_on_the_wildcard_address_is_refused():
    # Bound to every address but never listening: nothing can connect to it, and the daemon must refuse it
    # because of where it is bound, whatever its state.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("0.0.0.0", 0))
    port = s.getsockname()[1]
    log = refused_start(CONFIG, listener=s)
    check(f"Refusing to serve HTTP on 0.0.0.0:{port}: it is not a loopback address" in log, log)
    check("[HTTP] AllowInsecure=yes" in log, log)


run_tests([
    test_each_class_of_route_with_a_pos_and_an_admin_token,
    test_without_a_pos_token_pos_paths_are_open_and_admin_paths_need_the_admin_token,
    test_without_an_admin_token_admin_paths_are_closed_to_everyone,
    test_a_refused_post_is_answered_before_its_body,
    test_the_same_token_for_pos_and_admin_is_refused,
    test_tls_serves_1_2_and_1_3_and_refuses_older,
    test_tls_client_trusting_another_ca_refuses_the_server,
    test_tls_with_curl,
    test_plain_http_to_the_tls_listener_gets_no_answer,
    test_tls_needs_both_the_certificate_and_the_key,
    test_a_non_loopback_listen_address_is_refused_before_it_is_bound,
    test_tls_and_a_pos_token_let_a_non_loopback_address_through,
    test_a_passed_socket_on_the_wildcard_address_is_refused,
])
