"""Pure visibility rules the matrix cannot reach with the default configuration."""

from __future__ import annotations

from typing import Any

from services.notification.api import _may_see
from shared.auth import Principal, Role


def _delivery(kind: str, ref: str) -> dict[str, Any]:
    return {"recipient_kind": kind, "recipient_ref": ref}


def test_a_station_sees_deliveries_its_own_staff_received():
    # Station staff are addressed as "<station>/head", "<station>/deputy-1" (contacts.json).
    told = [_delivery("department", "transport"), _delivery("station_staff", "zeguo-1/head")]
    zeguo = Principal("station-zeguo-1", Role.STATION, station_id="zeguo-1")
    zeguo_online = Principal("station-zeguo-online", Role.STATION, station_id="zeguo-online")
    assert _may_see(zeguo, told)
    assert not _may_see(zeguo_online, told)
    assert not _may_see(zeguo, [_delivery("station_staff", "zeguo-10/head")])


def test_a_department_sees_only_what_it_was_told():
    told = [_delivery("department", "transport")]
    assert _may_see(Principal("dept-transport", Role.DEPARTMENT, department_id="transport"), told)
    assert not _may_see(Principal("dept-housing", Role.DEPARTMENT, department_id="housing"), told)
    assert not _may_see(Principal("voter", Role.VOTER), told)
    assert _may_see(Principal("committee", Role.COMMITTEE), told)
