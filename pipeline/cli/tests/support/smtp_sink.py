"""A real SMTP server for the delivery tests (aiosmtpd from PyPI).

Usage: python smtp_sink.py PORT DIR [FAIL_FIRST]

Listens on 127.0.0.1:PORT; every accepted message is written to DIR as NNNNN.eml (the raw
message), NNNNN.json (the SMTP envelope: MAIL FROM and RCPT TO, and every MIME part decoded:
content type, disposition, file name and text), so that the test reads what a mail client
shows. The first FAIL_FIRST
DATA commands are answered with a transient failure (451), so that the sender has to retry.
Prints "ready" on stdout once it accepts connections.
"""
import email
import email.policy
import itertools
import json
import os
import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out, fail_first):
        self.out = out
        self.fail_left = fail_first
        self.seq = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0:
            self.fail_left -= 1
            return "451 4.3.0 Temporary failure, try again later"
        n = next(self.seq)
        base = os.path.join(self.out, f"{n:05d}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".eml.tmp", base + ".eml")
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                parts.append({"content_type": part.get_content_type()})
                continue
            parts.append({
                "content_type": part.get_content_type(),
                "disposition": part.get_content_disposition(),
                "filename": part.get_filename(),
                "text": part.get_content() if part.get_content_maintype() == "text" else "",
            })
        with open(base + ".json.tmp", "w") as f:
            json.dump({
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "message_id": msg["Message-ID"],
                "subject": str(msg["Subject"]),
                "to": str(msg["To"]),
                "parts": parts,
            }, f, ensure_ascii=False)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Message accepted for delivery"


def main():
    port = int(sys.argv[1])
    out = sys.argv[2]
    fail_first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    os.makedirs(out, exist_ok=True)
    controller = Controller(Sink(out, fail_first), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
