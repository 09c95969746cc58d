"""WeChat official account server callback, plaintext mode: signatures and XML. No I/O.

Signature (接入指南): sha1 of the lexicographically sorted token, timestamp and nonce, joined.
Messages are XML (parsed with defusedxml: no entities, no external references).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from defusedxml import ElementTree

OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
ACCOUNT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BadMessage(ValueError):
    """The body is not a WeChat message we can read."""


def signature(token: str, timestamp: str, nonce: str) -> str:
    joined = "".join(sorted([token, timestamp, nonce]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()  # noqa: S324 - WeChat's scheme


def verify(token: str, *, signature_: str, timestamp: str, nonce: str) -> bool:
    if not token or not signature_ or not timestamp or not nonce:
        return False
    expected = signature(token, timestamp, nonce)
    return hmac.compare_digest(expected, signature_.strip().lower())


def is_fresh(timestamp: str, *, now: float, window_s: int) -> bool:
    """The signed timestamp (Unix seconds) is within `window_s` of `now`."""
    try:
        signed_at = int(timestamp)
    except ValueError:
        return False
    return abs(now - signed_at) <= window_s


@dataclass(frozen=True)
class Message:
    to_user: str  # the official account (gh_…)
    from_user: str  # the voter's openid: personal data
    create_time: int
    msg_type: str
    content: str | None
    msg_id: str | None
    event: str | None


def _text(root: Element, tag: str) -> str | None:
    node = root.find(tag)
    if node is None or node.text is None:
        return None
    return node.text.strip()


def parse(body: bytes) -> Message:
    try:
        root = ElementTree.fromstring(body)
    except Exception as exc:  # defusedxml raises its own and ParseError
        raise BadMessage(f"not readable XML ({type(exc).__name__})") from exc
    if root.tag != "xml":
        raise BadMessage("the root element is not <xml>")
    to_user = _text(root, "ToUserName") or ""
    from_user = _text(root, "FromUserName") or ""
    msg_type = (_text(root, "MsgType") or "").lower()
    if not OPENID.match(from_user) or not ACCOUNT.match(to_user) or not msg_type:
        raise BadMessage("ToUserName, FromUserName and MsgType are required")
    try:
        create_time = int(_text(root, "CreateTime") or "0")
    except ValueError as exc:
        raise BadMessage("CreateTime is not a number") from exc
    return Message(
        to_user=to_user,
        from_user=from_user,
        create_time=create_time,
        msg_type=msg_type,
        content=_text(root, "Content"),
        msg_id=_text(root, "MsgId"),
        event=_text(root, "Event"),
    )


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(*, to_user: str, from_user: str, create_time: int, content: str) -> str:
    """A passive text reply (被动回复文本消息)."""
    return (
        "<xml>"
        f"<ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        f"<MsgType>{_cdata('text')}</MsgType>"
        f"<Content>{_cdata(content)}</Content>"
        "</xml>"
    )
