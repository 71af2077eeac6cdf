"""Quantities parse, compare, add and print as kubectl users see them from a real API server."""
import pytest

from cluster.api.quantity import Quantity, QuantityError


@pytest.mark.parametrize("text,canonical", [
    ("1.5", "1500m"), ("0.5", "500m"), ("100m", "100m"), ("1000m", "1"), ("1000", "1k"),
    ("1024", "1024"), ("1.5Gi", "1536Mi"), ("0.5Gi", "512Mi"), ("2048Ki", "2Mi"), ("1Gi", "1Gi"),
    ("1.5Ki", "1536"), ("129M", "129M"), ("12e6", "12e6"), ("1E3", "1e3"), ("1E", "1E"),
    ("0.1m", "100u"), ("-1.5", "-1500m"), ("+5", "5"), ("0", "0"), ("0.0", "0"),
])
def test_canonical_form(text, canonical):
    assert str(Quantity.parse(text)) == canonical


def test_json_numbers_are_quantities():
    assert str(Quantity.parse(0.5)) == "500m"
    assert str(Quantity.parse(2)) == "2"


def test_compare_across_suffixes():
    assert Quantity.parse("1") == Quantity.parse("1000m")
    assert Quantity.parse("1Gi") > Quantity.parse("1G")
    assert Quantity.parse("100m") < Quantity.parse("0.2")


def test_sum_keeps_the_first_format():
    total = Quantity() + Quantity.parse("512Mi") + Quantity.parse("512Mi")
    assert str(total) == "1Gi"
    assert str(Quantity.parse("250m") + Quantity.parse("750m")) == "1"


def test_value_and_milli_value_round_up():
    assert Quantity.parse("1500m").value() == 2
    assert Quantity.parse("0.1m").milli_value() == 1


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "1Zi", "--1"])
def test_malformed_quantities_name_the_expected_form(bad):
    with pytest.raises(QuantityError, match="quantities must match the regular expression"):
        Quantity.parse(bad)


def test_unknown_suffix():
    with pytest.raises(QuantityError, match="unable to parse quantity's suffix"):
        Quantity.parse("1e")
