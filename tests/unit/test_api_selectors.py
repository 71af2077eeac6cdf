"""Label and field selectors as `kubectl get -l` / `--field-selector` use them."""
import pytest

from cluster.api.errors import APIError
from cluster.api.resources import by_kind
from cluster.api.selectors import (from_label_selector, parse_field_selector, parse_label_selector,
                                   selector_string)

WEB = {"app": "web", "tier": "frontend", "env": "prod"}
DB = {"app": "db", "env": "qa"}
BARE = {}


@pytest.mark.parametrize("text, web, db, bare", [
    ("", True, True, True),
    ("app=web", True, False, False),
    ("app==web", True, False, False),
    ("app!=web", False, True, True),
    ("env in (prod, qa)", True, True, False),
    ("env notin (prod)", False, True, True),
    ("tier", True, False, False),
    ("!tier", False, True, True),
    ("app=web,env=prod", True, False, False),
    ("app in (web,db),!tier", False, True, False),
])
def test_label_selector_semantics(text, web, db, bare):
    selector = parse_label_selector(text)
    assert (selector.matches(WEB), selector.matches(DB), selector.matches(BARE)) == (web, db, bare)


def test_numeric_comparisons():
    assert parse_label_selector("gen>3").matches({"gen": "4"})
    assert not parse_label_selector("gen<3").matches({"gen": "4"})


@pytest.mark.parametrize("text", ["app in (web", "=web", "app web", "app=web,", "app=a b c",
                                  "Bad Key=x", "a=-b-"])
def test_bad_label_selectors_are_400_naming_the_selector(text):
    with pytest.raises(APIError) as e:
        parse_label_selector(text)
    assert e.value.code == 400 and repr(text) in e.value.message


def test_metav1_label_selector():
    selector = from_label_selector({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["prod", "staging"]},
        {"key": "canary", "operator": "DoesNotExist"}]})
    assert selector.matches(WEB) and not selector.matches(DB)
    assert from_label_selector({}).matches(DB)
    assert not from_label_selector(None).matches(WEB)
    assert selector_string({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "env", "operator": "NotIn", "values": ["qa", "dev"]}]}) == "app=web,env notin (dev,qa)"


def test_field_selectors():
    pods = by_kind("v1", "Pod")
    pod = {"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Running"}}
    assert parse_field_selector("spec.nodeName=n1", pods).matches(pod)
    assert parse_field_selector("status.phase!=Pending,metadata.name==p", pods).matches(pod)
    assert not parse_field_selector("spec.nodeName=", pods).matches(pod)
    assert parse_field_selector("spec.nodeName=", pods).matches({"metadata": {}})
    assert parse_field_selector("metadata.namespace=d", pods).value_of("metadata.namespace") == "d"
    with pytest.raises(APIError) as e:
        parse_field_selector("spec.nodeName=n1", by_kind("v1", "Service"))
    assert e.value.code == 400 and e.value.message == "field label not supported: spec.nodeName"
