"""Sending one email over SMTP (smtplib), with every failure turned into one clear line.

`security`: `starttls` (plain connection upgraded to TLS; refused if the server does not offer
it, certificate verified with the system's CAs), `ssl` (TLS from the first byte, SMTP_SSL) or
`none` (for a local relay on the same host or network). The password comes only from
TRACKER_SMTP_PASSWORD; it is never put in a message, and removed from any server text we quote,
plain, base64 (as AUTH PLAIN / AUTH LOGIN send it) or percent-encoded (tracker.redaction).
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from pydantic import SecretStr

from tracker.errors import TrackerError
from tracker.redaction import redact
from tracker.settings import ENV_SMTP_PASSWORD, Email

TIMEOUT = 30.0
"""Seconds for connecting and for each SMTP command."""


class MailError(TrackerError):
    """The email could not be sent (server unreachable, TLS, login, refused)."""

    exit_code = 1


Refused = dict[str, tuple[int, bytes]]


def _one_line(text: object, secret: str | None) -> str:
    """Server text for a message: the password removed in any encoding (a server may quote the
    base64 AUTH argument back), then one line, then shortened (never the other way round: a cut
    could leave part of an encoded password that no longer matches)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    line = " ".join(redact(str(text), [secret]).split()) or "no details"
    return line[:300]


def _reason(exc: BaseException, secret: str | None) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_one_line(exc.smtp_error, secret)}"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({_one_line(exc.strerror or exc, secret)})"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(exc.strerror, secret)
    return _one_line(exc, secret) if str(exc) else type(exc).__name__


def check_config(email: Email, password: SecretStr | None) -> None:
    """Problems that make sending pointless, found before anything is claimed or built."""
    if not email.recipients:
        raise MailError("no recipients: set [email] recipients in the settings")
    if not email.sender:
        raise MailError("no sender: set [email] sender in the settings")
    if email.username and password is None:
        raise MailError(f"[email] username is set but {ENV_SMTP_PASSWORD} is not: set the SMTP password "
                        "in the environment")


def send(message: EmailMessage, email: Email, password: SecretStr | None, *,
         recipients: Sequence[str] | None = None, timeout: float = TIMEOUT) -> Refused:
    """Deliver `message` to the server in `email`; returns the recipients it refused (others got it).

    Raises MailError (one line, never containing the password) when nothing was accepted.
    """
    check_config(email, password)
    secret = password.get_secret_value() if password else None
    to = list(recipients or email.recipients)
    where = f"{email.host}:{email.port}"
    try:
        if email.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(email.host, email.port, timeout=timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(email.host, email.port, timeout=timeout)
    except ssl.SSLError as exc:
        raise MailError(f"TLS with SMTP server {where} failed: {_reason(exc, secret)} "
                        "(is this port for security = \"ssl\"?)") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"cannot reach SMTP server {where}: {_reason(exc, secret)}") from None
    try:
        with smtp:
            smtp.ehlo()
            if email.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailError(f"SMTP server {where} does not offer STARTTLS: use the server's TLS "
                                    "port with security = \"ssl\", or security = \"none\" for a local relay")
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if email.username:
                assert secret is not None
                try:
                    smtp.login(email.username, secret)
                except smtplib.SMTPAuthenticationError as exc:
                    raise MailError(f"SMTP server {where} refused the login of {email.username}: "
                                    f"{_reason(exc, secret)} (check {ENV_SMTP_PASSWORD})") from None
                except smtplib.SMTPNotSupportedError:
                    raise MailError(f"SMTP server {where} does not accept a login on this connection "
                                    "(it may need security = \"starttls\" or \"ssl\")") from None
            return smtp.send_message(message, from_addr=email.sender, to_addrs=to)
    except MailError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        refused = "; ".join(f"{addr}: {_reason(smtplib.SMTPResponseException(*err), secret)}"
                            for addr, err in exc.recipients.items())
        raise MailError(f"SMTP server {where} refused every recipient: {refused}") from None
    except smtplib.SMTPSenderRefused as exc:
        raise MailError(f"SMTP server {where} refused the sender {email.sender}: {_reason(exc, secret)}") from None
    except ssl.SSLError as exc:
        raise MailError(f"TLS with SMTP server {where} failed: {_reason(exc, secret)}") from None
    except smtplib.SMTPServerDisconnected as exc:
        raise MailError(f"SMTP server {where} closed the connection: {_reason(exc, secret)}") from None
    except smtplib.SMTPException as exc:
        raise MailError(f"SMTP server {where} failed: {_reason(exc, secret)}") from None
    except OSError as exc:
        raise MailError(f"connection to SMTP server {where} failed: {_reason(exc, secret)}") from None
