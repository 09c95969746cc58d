"""Chinese labels for the codes the services use."""

from __future__ import annotations

CHANNELS = {
    "all": "全部渠道",
    "station_reception": "接待日坐诊",
    "deputy_visit": "代表出诊",
    "joint_session": "部门会诊",
    "mailbox": "代表信箱",
    "online": "网上联络站",
    "wechat": "微信",
    "hotline": "热线电话",
}

CASE_STATES = {
    "triaged": "待分拨",
    "pending_review": "待审定(约请)",
    "approved": "已审定",
    "rejected": "已驳回",
    "assigned": "已交办",
    "returned": "已退回",
    "acknowledged": "已签收",
    "extension_requested": "申请延期",
    "completed": "已办结",
    "evaluated": "已评议",
    "reopened": "重新办理",
    "closed": "已关闭",
}

STAGES = {
    "submitted": "已受理",
    "triaged": "分析研判",
    "assigned": "已交办",
    "acknowledged": "部门已签收",
    "extension_requested": "申请延期",
    "extension_granted": "同意延期",
    "extension_refused": "不同意延期",
    "returned": "部门退回",
    "completed": "已办结",
    "reopened": "重新办理",
    "closed": "已关闭",
    "overdue": "已逾期",
    "supervised": "督办",
    "rated": "已评价",
    "evaluated": "已评议",
    "invitation_requested": "上报约请",
    "invitation_approved": "约请已审定",
    "invitation_declined": "约请未通过",
}

DELIVERY_STATUS = {
    "pending": "待发送",
    "sending": "发送中",
    "sent": "已发送",
    "delivered": "已送达",
    "failed": "发送失败",
    "deferred": "暂缓发送",
    "skipped": "不发送",
}

RATING_LEVELS = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "unsatisfied": "不满意",
}

ROLES = {
    "operator": "运营人员",
    "committee": "代表与选任工委",
    "admin": "管理员",
    "department": "职能部门",
    "station": "代表联络站",
}

SERVICES = {
    "intake": "受理服务 intake",
    "routing": "交办服务 routing",
    "notification": "通知服务 notification",
    "evaluation": "评价服务 evaluation",
}


def label(table: dict[str, str], code: str | None) -> str:
    if code is None:
        return "—"
    return table.get(code, code)
