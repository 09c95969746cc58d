import pytest

from services.intake import wechat

# WeChat's own plaintext-mode example (消息加解密说明 → 接入指引 → 明文模式).
DOC = {"token": "AAAAA", "timestamp": "1714037059", "nonce": "486452656"}
DOC_SIGNATURE = "899cf89e464efb63f54ddac96b0a0a235f53aa78"

# The text message of WeChat's documentation (接收普通消息 → 文本消息).
DOC_TEXT = b"""<xml>
  <ToUserName><![CDATA[toUser]]></ToUserName>
  <FromUserName><![CDATA[fromUser]]></FromUserName>
  <CreateTime>1348831860</CreateTime>
  <MsgType><![CDATA[text]]></MsgType>
  <Content><![CDATA[this is a test]]></Content>
  <MsgId>1234567890123456</MsgId>
</xml>"""


def test_signature_matches_wechat_s_documented_example():
    assert wechat.signature(DOC["token"], DOC["timestamp"], DOC["nonce"]) == DOC_SIGNATURE
    assert wechat.verify(
        "AAAAA", signature_=DOC_SIGNATURE, timestamp="1714037059", nonce="486452656"
    )


@pytest.mark.parametrize(
    ("token", "signature", "timestamp", "nonce"),
    [
        ("AAAAB", DOC_SIGNATURE, "1714037059", "486452656"),
        ("AAAAA", DOC_SIGNATURE, "1714037060", "486452656"),
        ("AAAAA", "0" * 40, "1714037059", "486452656"),
        ("", DOC_SIGNATURE, "1714037059", "486452656"),  # not configured: nothing verifies
        ("AAAAA", "", "1714037059", "486452656"),
    ],
)
def test_anything_else_fails(token, signature, timestamp, nonce):
    assert not wechat.verify(token, signature_=signature, timestamp=timestamp, nonce=nonce)


def test_the_documented_text_message_parses():
    message = wechat.parse(DOC_TEXT)
    assert (message.to_user, message.from_user) == ("toUser", "fromUser")
    assert (message.msg_type, message.content, message.msg_id) == (
        "text",
        "this is a test",
        "1234567890123456",
    )
    assert message.create_time == 1348831860


@pytest.mark.parametrize(
    "body",
    [
        b"not xml",
        b"<root><MsgType>text</MsgType></root>",
        b"<xml><MsgType>text</MsgType></xml>",
        # entity expansion (billion laughs) and external entities are refused by defusedxml
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
        b"<xml><ToUserName>gh_1</ToUserName><FromUserName>&b;</FromUserName></xml>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<xml><FromUserName>&e;</FromUserName></xml>",
    ],
)
def test_unreadable_or_dangerous_bodies_are_refused(body):
    with pytest.raises(wechat.BadMessage):
        wechat.parse(body)


def test_the_reply_is_a_text_message_that_round_trips_even_with_cdata_ends():
    xml = wechat.text_reply(
        to_user="fromUser", from_user="toUser", create_time=1, content="回执码 ]]> ABCDE-FGHJK"
    )
    reply = wechat.parse(xml.encode())
    assert reply.content == "回执码 ]]> ABCDE-FGHJK"
    assert (reply.to_user, reply.from_user, reply.msg_type) == ("fromUser", "toUser", "text")
