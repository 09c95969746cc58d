import re

import pytest

from services.intake.domain import InvalidPhone, new_receipt_code, normalise_mobile


@pytest.mark.parametrize(
    "raw", ["13800138000", "+86 138 0013 8000", "138-0013-8000", "8613800138000"]
)
def test_mainland_mobiles_normalise_to_e164(raw):
    assert normalise_mobile(raw) == "+8613800138000"


@pytest.mark.parametrize("raw", ["12345", "057612345678", "+14155550100", "abc", "1380013800"])
def test_other_numbers_are_refused(raw):
    with pytest.raises(InvalidPhone):
        normalise_mobile(raw)


def test_receipt_codes_are_short_readable_and_distinct():
    codes = {new_receipt_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in list(codes)[:50]:
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code)
