from tests.pii_scan import scan_text


def test_clear_mobile_numbers_are_found_masked_ones_are_not():
    assert scan_text('{"phone": "+8613912345678"}')
    assert scan_text("call 13912345678 now")
    assert not scan_text('{"phone": "139****5678"}')
    assert not scan_text('{"offset": 113912345678901}')
    assert not scan_text('{"case_id": "6f1c1f3e-4b7a-4c51-9d8e-3a2b1c0d9e8f"}')
    assert not scan_text('{"case_id": "15c3d1a6-a1d5-4f02-94a1-e16972613424"}')


def test_known_test_names_are_found():
    assert scan_text('{"voter": "王小明"}')
