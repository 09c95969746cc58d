"""Message templates (Chinese), their variables and safe rendering. No I/O.

Every template is registered with each provider under a code (settings); the text here is the
one registered, used by the console provider, for length checks and for operators. Variables
are substituted into fixed text (`str.format_map` never re-expands what it inserts), after
`clean_param` removed what could change the message's meaning or form: control characters,
line breaks, the signature brackets 【】 and braces.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

SMS_SEGMENT_CHARS = 70  # one SMS segment; longer messages are split into 67-char parts
SMS_MULTIPART_CHARS = 67
PARAM_MAX_CHARS = 35  # Aliyun: a template variable is at most 35 characters

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u2028\u2029【】{}<>]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Template:
    name: str
    text: str  # with {variable} placeholders, in the order given by `params`
    params: tuple[str, ...]
    # Variables that must not be clipped (a link cut short is a broken link).
    unclipped: tuple[str, ...] = ()


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template(
            "opinion_received_voter",
            "【温岭人大】您的意见已受理，回执号{receipt_code}，可凭回执号查询办理进度。",
            ("receipt_code",),
        ),
        Template(
            "opinion_at_station",
            "【温岭人大】{station}收到选民意见（回执号{receipt_code}，{category}），请及时研判。",
            ("station", "receipt_code", "category"),
        ),
        Template(
            "case_assigned_department",
            "【温岭人大】您单位有新的交办件（回执号{receipt_code}），"
            "请于{acknowledge_due}前签收，{complete_due}前办结。",
            ("receipt_code", "acknowledge_due", "complete_due"),
        ),
        Template(
            "case_assigned_voter",
            "【温岭人大】您的意见（回执号{receipt_code}）已交{department}办理，"
            "{complete_due}前答复。",
            ("receipt_code", "department", "complete_due"),
        ),
        Template(
            "case_completed_voter",
            "【温岭人大】您反映的意见已办结：{result}。",
            ("result",),
        ),
        Template(
            "rating_invited_voter",
            "【温岭人大】请对您意见的办理情况评价：{url} ，{expires}前有效。",
            ("url", "expires"),
            unclipped=("url",),
        ),
        Template(
            "case_deadline_approaching_department",
            "【温岭人大】交办件{case_ref}将于{due}到{deadline}期限，请抓紧办理。",
            ("case_ref", "due", "deadline"),
        ),
        Template(
            "case_overdue_department",
            "【温岭人大】交办件{case_ref}已超过{deadline}期限（{due}），请立即办理。",
            ("case_ref", "deadline", "due"),
        ),
        Template(
            "invitation_decided_station",
            "【温岭人大】约请事项{case_ref}（{department}）审定结果：{decision}。",
            ("case_ref", "department", "decision"),
        ),
        Template(
            "invitation_requested_committee",
            "【温岭人大】{station}上报约请事项{case_ref}（{department}），请审定。",
            ("station", "case_ref", "department"),
        ),
        Template(
            "case_escalated_committee",
            "【温岭人大】交办件{case_ref}（{department}）{deadline}逾期，已提请督办。",
            ("case_ref", "department", "deadline"),
        ),
    )
}


def clean_param(value: str, *, max_chars: int = PARAM_MAX_CHARS, clip: bool = True) -> str:
    """One line of plain text, without characters that could alter the message, clipped."""
    text = _SPACES.sub(" ", _UNSAFE.sub(" ", value)).strip()
    if clip and len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def build_params(template: str, values: dict[str, str]) -> dict[str, str]:
    """The template's variables in its order, cleaned; a missing variable is an error."""
    tpl = TEMPLATES[template]
    missing = [p for p in tpl.params if p not in values]
    if missing:
        raise KeyError(f"template {template} needs {missing}")
    return {p: clean_param(values[p], clip=p not in tpl.unclipped) for p in tpl.params}


def render(template: str, params: dict[str, str]) -> str:
    tpl = TEMPLATES[template]
    safe = {p: clean_param(params.get(p, ""), clip=p not in tpl.unclipped) for p in tpl.params}
    return tpl.text.format_map(safe)


def sms_segments(text: str) -> int:
    """How many SMS a text is billed and split as (70 chars, or 67 per part when longer)."""
    if len(text) <= SMS_SEGMENT_CHARS:
        return 1
    return math.ceil(len(text) / SMS_MULTIPART_CHARS)
