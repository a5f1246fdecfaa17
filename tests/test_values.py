"""Parameter values: only finite numbers with SPICE suffixes get through."""

import math

import pytest

from gcsim.core.errors import ParameterError
from gcsim.core.values import check_name, format_number, parse_assignment, parse_number


@pytest.mark.parametrize("text, expected", [
    ("0.45", 0.45), ("15n", 15e-9), ("1.2f", 1.2e-15), ("3Meg", 3e6), ("3MEG", 3e6),
    ("2m", 2e-3), ("-1e-3", -1e-3), (".5", 0.5), ("10u", 10e-6), ("100p", 100e-12),
    ("7k", 7e3), ("1e3k", 1e6), (" 2 ", 2.0), (3, 3.0), (0.9, 0.9),
])
def test_numbers_and_suffixes(text, expected):
    assert parse_number(text) == pytest.approx(expected, rel=1e-15)


def test_suffix_scaling_is_exact():
    # 120n must be the float nearest 120e-9, not 120 * 1e-9 (which differs in the last bit).
    assert parse_number("120n") == 120e-9


@pytest.mark.parametrize("bad", [
    "1\n.control\nshell touch /tmp/x\n.endc", "1 ; shell rm -rf /", "{v_store}", "nan", "inf",
    "-inf", "1e400", "", "abc", "1x", "1 2", "0x10", "1n5", "'1'", True, None, [1],
])
def test_everything_else_is_refused(bad):
    with pytest.raises(ParameterError) as info:
        parse_number(bad, "parameter v_store")
    message = str(info.value)
    assert "\n" not in message and message.startswith("parameter v_store")


def test_format_round_trips_and_refuses_non_finite():
    for value in (0.45, 1.2e-15, 120e-9, -3.0):
        assert float(format_number(value)) == value
    with pytest.raises(ParameterError):
        format_number(math.nan)


def test_names_and_assignments():
    assert check_name("v_store") == "v_store"
    for bad in ("1abc", "v-store", "v store", "v\nx", ""):
        with pytest.raises(ParameterError):
            check_name(bad)
    assert parse_assignment("c_store=3f") == ("c_store", 3e-15)
    with pytest.raises(ParameterError, match="NAME=VALUE"):
        parse_assignment("c_store")
    with pytest.raises(ParameterError):
        parse_assignment("c_store=1\n.endc")
