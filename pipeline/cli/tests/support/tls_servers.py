"""TLS receivers for the delivery tests, with certificates made at start (Python `cryptography`,
installed with moto in the test venv).

Usage: python tls_servers.py DIR

Makes a certificate authority (DIR/ca.pem) and a server certificate it signs for 127.0.0.1 and
localhost; a second, self-signed certificate for the same names that no one trusts. Starts on
loopback ports:
  https_ok       an HTTPS webhook receiver with the CA's certificate
  https_untrusted an HTTPS webhook receiver with the self-signed certificate
  smtp_starttls  an SMTP server (aiosmtpd) that requires STARTTLS, CA's certificate
  smtp_tls       an SMTP server speaking TLS from the first byte (implicit TLS), CA's certificate
Every request body is written to DIR/https-<name>-NNN.json, every mail to DIR/mail-<name>-NNN.eml.
Prints one line of JSON with the ports, then serves until killed.
"""
import datetime
import http.server
import ipaddress
import itertools
import json
import os
import socket
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

OUT = sys.argv[1]
NOW = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def write_pem(path, key, cert):
    with open(path + ".key", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(path + ".pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def certificate(subject, key, issuer, issuer_key, ca):
    b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(days=1))
         .not_valid_after(NOW + datetime.timedelta(days=30)))
    if ca:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False), critical=True)
    else:
        b = b.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


ca_key = ec.generate_private_key(ec.SECP256R1())
ca = certificate("pharmwatch test CA", ca_key, "pharmwatch test CA", ca_key, True)
write_pem(os.path.join(OUT, "ca"), ca_key, ca)
srv_key = ec.generate_private_key(ec.SECP256R1())
write_pem(os.path.join(OUT, "server"), srv_key,
          certificate("127.0.0.1", srv_key, "pharmwatch test CA", ca_key, False))
rogue_key = ec.generate_private_key(ec.SECP256R1())
write_pem(os.path.join(OUT, "rogue"), rogue_key,
          certificate("127.0.0.1", rogue_key, "127.0.0.1", rogue_key, False))


def context(stem):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(OUT, stem + ".pem"), os.path.join(OUT, stem + ".key"))
    return ctx


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def https_server(label, stem):
    seq = itertools.count(1)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with open(os.path.join(OUT, f"https-{label}-{next(seq):03d}.json"), "wb") as f:
                f.write(body)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"accepted")

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.socket = context(stem).wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


class Sink:
    def __init__(self, label):
        self.label, self.seq = label, itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        path = os.path.join(OUT, f"mail-{self.label}-{next(self.seq):03d}.eml")
        with open(path, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        return "250 OK"


ports = {"https_ok": https_server("ok", "server"),
         "https_untrusted": https_server("untrusted", "rogue")}
starttls = Controller(Sink("starttls"), hostname="127.0.0.1", port=free_port(),
                      tls_context=context("server"), require_starttls=True)
starttls.start()
ports["smtp_starttls"] = starttls.port
implicit = Controller(Sink("tls"), hostname="127.0.0.1", port=free_port(),
                      ssl_context=context("server"), server_hostname="127.0.0.1")
implicit.start()
ports["smtp_tls"] = implicit.port
print(json.dumps(ports), flush=True)
threading.Event().wait()
