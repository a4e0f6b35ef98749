#!/usr/bin/env python3
"""A local SMTP server for the email receiver's tests (aiosmtpd, from PyPI).

Listens on 127.0.0.1 only. With --cert/--key it offers STARTTLS and
requires it before MAIL; with --user/--password it requires that login
(only over TLS). It answers 451 (transient) to the first --fail-first
messages and 550 (permanent) to a message for --reject, and appends every
accepted message to --out as one JSON line: envelope, whether TLS was on,
the login, and the message itself. Prints "ready" once listening.
"""

import argparse
import email
import email.policy
import json
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Handler:
    def __init__(self, args):
        self.args = args
        self.seen = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.seen += 1
            seen = self.seen
        if seen <= self.args.fail_first:
            return "451 4.3.0 Try again later"
        if self.args.reject and self.args.reject in envelope.rcpt_tos:
            return "550 5.1.1 Mailbox unavailable"
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "login": session.auth_data.login.decode() if session.auth_data else None,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        # The message as a reader sees it: headers and the decoded body.
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record["subject"] = str(parsed["subject"])
        if parsed.is_multipart():
            text = parsed.get_body(preferencelist=("plain",))
            record["body"] = text.get_content() if text is not None else ""
            record["attachments"] = [
                {"name": a.get_filename(), "type": a.get_content_type(), "size": len(a.get_payload(decode=True) or b"")}
                for a in parsed.iter_attachments()
            ]
        else:
            record["body"] = parsed.get_content()

        with self.lock, open(self.args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--reject")
    args = p.parse_args()
    params = {}
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        params.update(tls_context=ctx, require_starttls=True)
    if args.user:
        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == args.user.encode() and auth_data.password == args.password.encode()
            return AuthResult(success=ok, auth_data=auth_data)
        params.update(auth_required=True, auth_require_tls=True, authenticator=authenticate)
    controller = Controller(Handler(args), hostname="127.0.0.1", port=args.port, **params)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
