"""progresscast.jsoncodec: orjson's speed, the standard library's reach."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from progresscast.jsoncodec import dumps, loads, may_hold_long_int

EVENT = {
    "job_id": "j1",
    "seq": 7,
    "type": "progress_update",
    "stage_progress": 12.3456,
    "progress": 0.1,
    "message": "página 3 ✓ \u2028",
    "eta_seconds": None,
    "nested": {"list": [1, 2.5, True, False, None], "big": 2**63 - 1},
}


@pytest.mark.parametrize(
    "value",
    [EVENT, [], {}, "", 0, -1.5e-7, 1e300, '\x00\x1f"\\'],
)
def test_compact_json_that_reads_back_equal(value):
    text = dumps(value)
    assert isinstance(text, str)
    assert json.loads(text) == value
    assert ", " not in text and ": " not in text  # compact, as before


def test_non_ascii_stays_utf8_text():
    assert dumps({"m": "ü✓"}) == '{"m":"ü✓"}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"n": 2**64}, '{"n":18446744073709551616}'),  # beyond orjson's 64 bits
        ({1: "a"}, '{"1":"a"}'),  # non-string keys, as json writes them
    ],
)
def test_what_orjson_refuses_goes_through_json(value, expected):
    assert dumps(value) == expected


def test_unencodable_values_still_raise():
    with pytest.raises(TypeError):
        dumps({"x": object()})


@pytest.mark.parametrize(
    "value",
    [EVENT, {"n": 2**64 + 1}, {"n": -(2**63) - 1}, [2**100 + 7], {"1": "a"}, [], "ü✓"],
)
def test_loads_reads_back_what_dumps_wrote(value):
    # integers beyond 64 bits: orjson would read floats (2**64 + 1 -> 1.8446744073709552e19)
    for text in (dumps(value), dumps(value).encode()):
        back = loads(text)
        assert back == value
        assert repr(back) == repr(value)  # ints stay ints, exactly


def test_loads_still_refuses_what_is_not_json():
    with pytest.raises(ValueError):
        loads("{'single': 'quotes'}")


@pytest.mark.parametrize(
    ("text", "long_int"),
    [
        ("12345678901234567890", True),
        ('{"n":-12345678901234567890}', True),
        ("[1234567890123456789]", True),  # 19 digits: may pass 2**63
        ('"a string of 12345678901234567890 digits"', True),  # harmless: json's path
        ("123456789012345678", False),  # 18 digits: always 64 bits
        ("0.00012345678901234567", False),  # a fraction: a float either way
        ("1234567890123456789.5", False),
        ("12345678901234567890e5", False),
        ('{"created_at":1796052477.1444128,"progress":0.4123456789012345}', False),
        ('{"pace":[0.0004525184631347656,12345678901234567890]}', True),  # after a float
        ('{"pace":[0.0004525184631347656,0.5159342802268996]}', False),
        ("[12345678901234567890.5,12345678901234567890]", True),
        ('"\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663"', False),  # not ASCII
    ],
)
def test_only_integers_orjson_cannot_hold_take_jsons_path(text, long_int):
    assert may_hold_long_int(text) is long_int
    assert may_hold_long_int(text.encode()) is long_int


#: the rule, as a regex: 19 digits or more, not a fraction (after ".") and
#: not an integer part (before ".", "e" or "E")
LONG_INT = re.compile(r"(?<![.0-9])[0-9]{19,}(?![.0-9eE])")
NUMBERISH = st.text(alphabet='0123456789.eE-+ ,[]"ab\u0663é', max_size=80)


@given(st.lists(st.one_of(NUMBERISH, st.just("1" * 19), st.just("0." + "4" * 19)), max_size=6))
def test_the_check_follows_the_rule_on_any_text(parts):
    text = "".join(parts)
    expected = LONG_INT.search(text) is not None
    assert may_hold_long_int(text) is expected
    assert may_hold_long_int(text.encode()) is expected


JSONISH = st.text(alphabet='0123456789.eE-+ ,[]{}:"\\uabd\u0663é\ud800', max_size=60)


@given(st.one_of(JSONISH, st.from_regex(r"-?[0-9]{15,25}(\.[0-9]{1,22})?([eE]-?[0-9]{1,3})?")))
def test_loads_reads_what_json_reads(text):
    # Whatever the check lets through to orjson must read as json reads it.
    for given_text in (text, text.encode("utf-8", "surrogatepass")):
        try:
            expected = json.loads(given_text)
        except ValueError:
            continue  # not JSON (or not UTF-8) for json either
        assert repr(loads(given_text)) == repr(expected)


@pytest.mark.parametrize(
    "number",
    ["0.00012345678901234567", "1234567890123456789.5", "12345678901234567890e5", "1e-7"],
)
def test_long_fractions_read_as_json_reads_them(number):
    # They skip json's path now: orjson must give the same float.
    assert repr(loads(number)) == repr(json.loads(number))


def test_lone_surrogates_read_as_json_reads_them():
    for text in ('"\ud800 12345678901234567890"', '["\udfff", 1.5]', '"\\ud800"'):
        assert repr(loads(text)) == repr(json.loads(text))


def test_loads_reads_any_bytes_like_text():
    for text in (bytearray(b'[1,"x"]'), memoryview(b'[1,"x"]')):
        assert loads(text) == [1, "x"]
    assert loads(memoryview(b"[12345678901234567890]")) == [12345678901234567890]
