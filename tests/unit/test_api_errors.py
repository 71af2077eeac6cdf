"""Status errors read as a real API server's: reason, code, details and upstream's wording."""
from cluster.api import errors
from cluster.api.errors import Cause
from cluster.api.resources import by_kind


def test_not_found_names_the_group_resource():
    deploy = by_kind("apps/v1", "Deployment")
    status = errors.not_found(deploy, "web").status()
    assert status["message"] == 'deployments.apps "web" not found'
    assert status["reason"] == "NotFound" and status["code"] == 404
    assert status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}
    assert status["kind"] == "Status" and status["apiVersion"] == "v1" and status["status"] == "Failure"


def test_core_resources_have_no_group_suffix():
    assert errors.already_exists(("", "pods"), "p").message == 'pods "p" already exists'


def test_conflict_message_as_kubectl_shows_it():
    err = errors.conflict(("", "pods"), "p", "the object has been modified; please apply your"
                          " changes to the latest version and try again")
    assert err.code == 409 and err.reason == "Conflict"
    assert err.message.startswith('Operation cannot be fulfilled on pods "p": the object has')


def test_invalid_aggregates_causes_with_field_paths():
    causes = [Cause.required("spec.containers[0].image"),
              Cause.invalid("metadata.name", "Foo", "must be lowercase")]
    err = errors.invalid("Pod", "Foo", causes)
    assert err.code == 422 and err.reason == "Invalid"
    assert err.message == ('Pod "Foo" is invalid: [spec.containers[0].image: Required value, '
                           'metadata.name: Invalid value: "Foo": must be lowercase]')
    assert err.status()["details"]["causes"][0] == {
        "reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}


def test_invalid_with_one_cause_has_no_brackets_and_group_qualifies_kind():
    err = errors.invalid("Deployment", "web", [Cause.invalid("spec.replicas", -1, "must be greater"
                                                             " than or equal to 0")], group="apps")
    assert err.message == ('Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: '
                           'must be greater than or equal to 0')
    assert err.details["group"] == "apps" and err.details["kind"] == "Deployment"


def test_cause_bodies_as_upstream_words_them():
    assert str(Cause.not_supported("spec.type", "Foo", ["ClusterIP", "NodePort"])) == (
        'spec.type: Unsupported value: "Foo": supported values: "ClusterIP", "NodePort"')
    assert str(Cause.duplicate("spec.ports[1].name", "http")) == (
        'spec.ports[1].name: Duplicate value: "http"')
    assert str(Cause.forbidden("spec.selector", "field is immutable")) == (
        "spec.selector: Forbidden: field is immutable")
    assert str(Cause.invalid("spec.x", True, "")) == "spec.x: Invalid value: true"
    assert Cause.unknown("spec.foo").message == 'unknown field "spec.foo"'
    assert Cause.unknown("spec.foo").type == "FieldValueUnknown"


def test_forbidden_gone_and_media_type_codes():
    err = errors.forbidden(("", "pods"), "", 'User "bob" cannot list resource "pods"')
    assert err.code == 403 and err.message == 'pods is forbidden: User "bob" cannot list resource "pods"'
    assert errors.gone("too old resource version: 1 (5)").status()["reason"] == "Expired"
    assert errors.gone("x").code == 410
    err = errors.unsupported_media_type("application/vnd.kubernetes.protobuf")
    assert err.code == 415 and "application/vnd.kubernetes.protobuf" in err.message
    assert errors.method_not_supported(("", "bindings"), "list").message == (
        'list is not supported on resources of kind "bindings"')
    assert errors.unprocessable("x").code == 422
    assert errors.internal("boom").code == 500
    assert errors.too_many_requests("slow down").code == 429
    assert errors.not_acceptable("application/cbor").code == 406
