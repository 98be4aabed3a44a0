"""Notification channels: Slack (Block Kit), email (SMTP), a generic webhook (Alertmanager's
webhook JSON) and a Prometheus Alertmanager (`/api/v2/alerts`).

A notification is one group of alerts (`Notification`); `payload(kind, n)` renders it for a
channel kind as the JSON stored in the outbox, and `send(channel, payload)` delivers it. Errors
are `DeliveryError` with a message that never contains the channel's secrets (webhook URLs carry
their token in the path, SMTP has a password).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "SLACK_LIMITS",
    "AlertmanagerChannel",
    "ChannelConfig",
    "DeliveryError",
    "EmailChannel",
    "Notification",
    "SlackChannel",
    "WebhookChannel",
    "payload",
    "redacted",
    "send",
]

# Slack's documented limits for messages with blocks
SLACK_LIMITS = {
    "blocks": 50,
    "section_text": 3000,
    "header_text": 150,
    "fields": 10,
    "field_text": 2000,
}
_TIMEOUT = aiohttp.ClientTimeout(total=10)


class DeliveryError(Exception):
    """A channel refused or could not be reached (message without secrets)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(v: str) -> str:
    p = urlsplit(v)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError("must be an http(s) URL")
    return v


class SlackChannel(_Model):
    """A Slack incoming webhook."""

    kind: Literal["slack"] = "slack"
    webhook_url: str

    _v = field_validator("webhook_url")(classmethod(lambda cls, v: _http_url(v)))


class EmailChannel(_Model):
    """Mail over SMTP (STARTTLS or implicit TLS, optional login)."""

    kind: Literal["email"] = "email"
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)
    # for test servers with self-signed certificates; never on by default
    verify_tls: bool = True
    timeout: float = Field(default=10.0, gt=0, le=120)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookChannel(_Model):
    """Any HTTP receiver of Alertmanager's webhook JSON."""

    kind: Literal["webhook"] = "webhook"
    url: str
    headers: dict[str, str] = {}

    _v = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


class AlertmanagerChannel(_Model):
    """A Prometheus Alertmanager (its base URL; alerts go to `/api/v2/alerts`)."""

    kind: Literal["alertmanager"] = "alertmanager"
    url: str

    _v = field_validator("url")(classmethod(lambda cls, v: _http_url(v)))


ChannelConfig = SlackChannel | EmailChannel | WebhookChannel | AlertmanagerChannel


def redacted(c: ChannelConfig) -> dict[str, Any]:
    """The channel's settings with secrets replaced (what the API shows)."""
    d = c.model_dump(mode="json", by_alias=True)
    if isinstance(c, SlackChannel):
        p = urlsplit(c.webhook_url)
        d["webhook_url"] = f"{p.scheme}://{p.netloc}/<redacted>"
    if isinstance(c, EmailChannel) and c.password:
        d["password"] = "<redacted>"
    if isinstance(c, WebhookChannel):
        d["headers"] = {k: "<redacted>" for k in c.headers}
    return d


@dataclass(slots=True)
class NotifiedAlert:
    """One alert as a notification shows it."""

    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    value: float | None = None
    acked: bool = False


@dataclass(slots=True)
class Notification:
    """A group of alerts for one channel."""

    group_key: str
    receiver: str
    group_labels: dict[str, str]
    alerts: list[NotifiedAlert] = field(default_factory=list)
    external_url: str = ""
    key: str = ""  # idempotency key: the same notification always has the same key
    title_prefix: str = ""

    @property
    def status(self) -> str:
        """`firing` when any alert fires, else `resolved`."""
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    def common(self, attr: str) -> dict[str, str]:
        """Labels or annotations that every alert shares."""
        maps = [getattr(a, attr) for a in self.alerts]
        if not maps:
            return {}
        out = dict(maps[0])
        for m in maps[1:]:
            out = {k: v for k, v in out.items() if m.get(k) == v}
        return out


def _iso(t: float | None) -> str:
    if t is None:
        return "0001-01-01T00:00:00Z"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(a: NotifiedAlert) -> str:
    return a.annotations.get("summary") or a.labels.get("alertname", "alert")


def slack_payload(n: Notification) -> dict[str, Any]:
    """Block Kit message within Slack's limits (50 blocks, 150-char header, 3,000-char
    sections, 10 fields of 2,000)."""
    firing = [a for a in n.alerts if a.status == "firing"]
    resolved = [a for a in n.alerts if a.status == "resolved"]
    title = f"{n.title_prefix}[{n.status.upper()}{':' + str(len(firing)) if firing else ''}] "
    title += ", ".join(f"{k}={v}" for k, v in n.group_labels.items()) or "alerts"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, 150)}}
    ]
    # room for header, a context line and a possible "more" line
    room = SLACK_LIMITS["blocks"] - 3
    shown = (firing + resolved)[:room]
    for a in shown:
        icon = ":red_circle:" if a.status == "firing" else ":large_green_circle:"
        text = f"{icon} *{a.labels.get('alertname', '')}* {_summary(a)}"
        fields = [
            {"type": "mrkdwn", "text": _cut(f"*{k}*\n{v}", 2000)}
            for k, v in sorted(a.labels.items())
            if k != "alertname"
        ][: SLACK_LIMITS["fields"]]
        block: dict[str, Any] = {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(text, 3000)},
        }
        if fields:
            block["fields"] = fields
        blocks.append(block)
    more = len(firing) + len(resolved) - len(shown)
    if more > 0:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"… and {more} more"}})
    ctx = f"{len(firing)} firing, {len(resolved)} resolved"
    if n.external_url:
        ctx += f" · <{n.external_url}|dashboard>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(ctx, 3000)}]})
    return {"text": _cut(title, 3000), "blocks": blocks}


def webhook_payload(n: Notification) -> dict[str, Any]:
    """Alertmanager's webhook JSON (version 4)."""
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common("labels"),
        "commonAnnotations": n.common("annotations"),
        "externalURL": n.external_url,
        "alerts": [
            {
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": _iso(a.starts_at),
                "endsAt": _iso(a.ends_at),
                "generatorURL": n.external_url,
                "fingerprint": a.fingerprint,
            }
            for a in n.alerts
        ],
    }


def alertmanager_payload(n: Notification) -> list[dict[str, Any]]:
    """Postable alerts of Alertmanager's API v2 (resolved ones carry their end time)."""
    out = []
    for a in n.alerts:
        item: dict[str, Any] = {
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": _iso(a.starts_at),
        }
        if a.status == "resolved" and a.ends_at is not None:
            item["endsAt"] = _iso(a.ends_at)
        if n.external_url:
            item["generatorURL"] = n.external_url
        out.append(item)
    return out


def email_payload(n: Notification) -> dict[str, Any]:
    """Subject and plain-text body."""
    firing = [a for a in n.alerts if a.status == "firing"]
    subject = f"{n.title_prefix}[{n.status.upper()}{':' + str(len(firing)) if firing else ''}] "
    subject += ", ".join(f"{k}={v}" for k, v in n.group_labels.items()) or "alerts"
    lines = []
    for a in n.alerts:
        lines.append(f"{a.status.upper()}: {_summary(a)}")
        lines.extend(f"  {k} = {v}" for k, v in sorted(a.labels.items()))
        lines.append(f"  since {_iso(a.starts_at)}")
        lines.append("")
    if n.external_url:
        lines.append(f"Dashboard: {n.external_url}")
    return {"subject": subject[:250], "body": "\n".join(lines)}


def payload(kind: str, n: Notification) -> dict[str, Any]:
    """The outbox document for a channel kind: {"key": …, "body": …}."""
    body: Any
    if kind == "slack":
        body = slack_payload(n)
    elif kind == "webhook":
        body = webhook_payload(n)
    elif kind == "alertmanager":
        body = alertmanager_payload(n)
    elif kind == "email":
        body = email_payload(n)
    else:
        raise ValueError(f"unknown channel kind {kind!r}")
    return {"key": n.key, "body": body}


async def _post(url: str, body: Any, headers: dict[str, str], what: str) -> None:
    try:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as s,
            s.post(url, json=body, headers=headers) as r,
        ):
            if r.status >= 300:
                text = (await r.text())[:200]
                raise DeliveryError(f"{what} answered {r.status}: {text}")
    except aiohttp.ClientError as e:
        raise DeliveryError(f"{what} unreachable: {type(e).__name__}") from None
    except TimeoutError:
        raise DeliveryError(f"{what} timed out") from None


async def send(channel: ChannelConfig, doc: dict[str, Any]) -> None:
    """Deliver one outbox document; DeliveryError when the receiver did not take it."""
    key = str(doc.get("key", ""))
    body = doc["body"]
    if isinstance(channel, SlackChannel):
        await _post(channel.webhook_url, body, {}, "Slack")
    elif isinstance(channel, WebhookChannel):
        await _post(channel.url, body, {**channel.headers, "Idempotency-Key": key}, "webhook")
    elif isinstance(channel, AlertmanagerChannel):
        await _post(channel.url.rstrip("/") + "/api/v2/alerts", body, {}, "Alertmanager")
    else:
        await _send_mail(channel, body, key)


async def _send_mail(c: EmailChannel, body: dict[str, Any], key: str) -> None:
    import ssl

    import aiosmtplib

    msg = EmailMessage()
    msg["From"] = c.sender
    msg["To"] = ", ".join(c.to)
    msg["Subject"] = body["subject"]
    msg["Date"] = email.utils.formatdate(localtime=False)
    # a stable Message-ID lets mail systems drop a copy sent again after a crash
    domain = c.sender.rpartition("@")[2] or "agentgate"
    msg["Message-ID"] = f"<{key or email.utils.make_msgid()}@{domain}>"
    msg.set_content(body["body"])
    ctx = ssl.create_default_context()
    if not c.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        await aiosmtplib.send(
            msg,
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password,
            use_tls=c.security == "tls",
            start_tls=c.security == "starttls",
            tls_context=ctx,
            timeout=c.timeout,
        )
    except aiosmtplib.SMTPException as e:
        code = getattr(e, "code", "")
        raise DeliveryError(f"SMTP {c.host}:{c.port} refused: {type(e).__name__} {code}") from None
    except OSError as e:
        raise DeliveryError(f"SMTP {c.host}:{c.port} unreachable: {e.strerror or e}") from None
