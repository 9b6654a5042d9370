"""Every rule of the v1 service spec."""

from __future__ import annotations

import json

import pytest

from sws.errors import SpecError
from sws.spec import MAX_REPLICAS, EnvVar, ServiceSpec, load_documents, parse_specs

VALID = {
    "apiVersion": "v1",
    "spec": {"name": "web", "port": 8081, "domain": "web.example.com", "image": "repo/image:tag"},
}

SEED_EXAMPLE = """\
apiVersion: v1
spec:
  name: service-name
  port: 8081
  domain: example.com
  image: my-repo/my-image:somve-version
  volumeMount: /foo/bar
  env:
    - name: KEY_1
      value: foo
    - name: KEY_2
      bar: bar
"""


def document(**spec_changes: object) -> dict[str, object]:
    spec = {**VALID["spec"], **spec_changes}  # type: ignore[dict-item]
    return {"apiVersion": "v1", "spec": {k: v for k, v in spec.items() if v is not ...}}


def errors_of(doc: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        ServiceSpec.from_document(doc)
    return [str(e) for e in info.value.errors]


def test_seed_example_typo_is_rejected_with_both_messages() -> None:
    with pytest.raises(SpecError) as info:
        parse_specs(SEED_EXAMPLE, "web.yaml")
    assert [str(e) for e in info.value.errors] == [
        "spec.env[1]: unknown key 'bar'",
        "spec.env[1]: missing 'value'",
    ]
    assert info.value.status == 400
    assert str(info.value).startswith("web.yaml: ")
    assert info.value.to_json()["details"] == [
        {"field": "spec.env[1]", "message": "unknown key 'bar'"},
        {"field": "spec.env[1]", "message": "missing 'value'"},
    ]


def test_seed_example_with_typo_fixed_parses() -> None:
    (spec,) = parse_specs(SEED_EXAMPLE.replace("bar: bar", "value: bar"))
    assert spec.name == "service-name"
    assert spec.port == 8081
    assert spec.volume_mount == "/foo/bar"
    assert spec.volume_name == "service-name-volume"
    assert spec.env == (EnvVar("KEY_1", "foo"), EnvVar("KEY_2", "bar"))
    assert spec.replicas == 1


def test_minimal_spec_defaults() -> None:
    spec = ServiceSpec.from_document(VALID)
    assert (spec.volume_mount, spec.env, spec.replicas, spec.volume_name) == (None, (), 1, None)


@pytest.mark.parametrize("key", ["name", "port", "domain", "image"])
def test_required_fields(key: str) -> None:
    assert errors_of(document(**{key: ...})) == [f"spec: missing '{key}'"]


@pytest.mark.parametrize(
    "name",
    ["Web", "-web", "web-", "we_b", "a" * 64, "", "web.app", "wéb"],
)
def test_name_must_be_dns_label(name: str) -> None:
    (error,) = errors_of(document(name=name))
    assert error.startswith("spec.name: ") and "is not a DNS label" in error


@pytest.mark.parametrize("name", ["a", "web", "web-2", "0web", "a" * 63])
def test_good_names(name: str) -> None:
    assert ServiceSpec.from_document(document(name=name)).name == name


@pytest.mark.parametrize("port", [0, 65536, 70000, -1])
def test_port_range(port: int) -> None:
    assert errors_of(document(port=port)) == [f"spec.port: {port} is not a port (1-65535)"]


@pytest.mark.parametrize("port", ["8081", 80.5, True, None, [80]])
def test_port_must_be_integer(port: object) -> None:
    if port is None:
        assert errors_of(document(port=port)) == ["spec: missing 'port'"]
        return
    (error,) = errors_of(document(port=port))
    assert error.startswith("spec.port: must be an integer")


def test_domain_is_lowercased_and_trailing_dot_dropped() -> None:
    assert (
        ServiceSpec.from_document(document(domain="Web.Example.COM.")).domain == "web.example.com"
    )


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "-a.com",
        "a-.com",
        "a..com",
        "a_b.com",
        "a" * 64 + ".com",
        "x." * 127 + "com",
        "1.2.3.4",
        "http://a.com",
        "a.com/x",
        "a b.com",
    ],
)
def test_bad_domains(domain: str) -> None:
    (error,) = errors_of(document(domain=domain))
    assert error.startswith("spec.domain: ")


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "nginx:1.25",
        "library/nginx:latest",
        "my-repo/my-image:somve-version",
        "registry.local:5000/team/app:v1.2.3",
        "localhost/app",
        "app@sha256:" + "a" * 64,
        "ghcr.io/o/r:t@sha256:" + "0" * 64,
        "a__b/c.d-e:f_G",
    ],
)
def test_good_images(image: str) -> None:
    assert ServiceSpec.from_document(document(image=image)).image == image


@pytest.mark.parametrize(
    "image",
    [
        "",
        "Nginx",
        "nginx:",
        ":tag",
        "nginx:-x",
        "a/-b",
        "nginx@sha256:123",
        "a b",
        "a//b",
        "nginx:" + "t" * 129,
    ],
)
def test_bad_images(image: str) -> None:
    (error,) = errors_of(document(image=image))
    assert error.startswith("spec.image: ") and "not a valid Docker image reference" in error


def test_volume_mount_is_normalised() -> None:
    assert ServiceSpec.from_document(document(volumeMount="/data//x/")).volume_mount == "/data/x"


@pytest.mark.parametrize(
    ("mount", "rule"),
    [
        ("data", "not an absolute path"),
        ("/", "over '/'"),
        ("/a/../b", "'..'"),
        ("/a/./b", "'.'"),
        (5, "must be a string"),
    ],
)
def test_bad_volume_mounts(mount: object, rule: str) -> None:
    (error,) = errors_of(document(volumeMount=mount))
    assert error.startswith("spec.volumeMount: ") and rule in error


@pytest.mark.parametrize("replicas", [0, 1, 3, MAX_REPLICAS])
def test_replicas_range(replicas: int) -> None:
    assert ServiceSpec.from_document(document(replicas=replicas)).replicas == replicas


@pytest.mark.parametrize("replicas", [-1, MAX_REPLICAS + 1])
def test_replicas_out_of_range(replicas: int) -> None:
    assert errors_of(document(replicas=replicas)) == [
        f"spec.replicas: {replicas} is out of range (0-{MAX_REPLICAS})"
    ]


def test_unknown_keys_everywhere() -> None:
    doc = {"apiVersion": "v1", "kind": "Service", "spec": {**VALID["spec"], "replica": 2}}  # type: ignore[dict-item]
    errors = errors_of(doc)
    assert errors[0] == "unknown key 'kind' (allowed: apiVersion, spec)"
    assert any(e.startswith("spec: unknown key 'replica'") for e in errors)


def test_api_version_names_the_supported_ones() -> None:
    assert errors_of({**VALID, "apiVersion": "v2"}) == [
        'apiVersion: "v2" is not supported (supported: v1)'
    ]
    assert errors_of({"spec": VALID["spec"]}) == ["missing 'apiVersion' (supported: v1)"]


def test_spec_must_be_mapping() -> None:
    assert errors_of({"apiVersion": "v1", "spec": [1]}) == ["spec: must be a mapping, not a list"]
    assert errors_of({"apiVersion": "v1"}) == ["missing 'spec'"]
    assert errors_of("text") == ["must be a mapping with apiVersion and spec, not a string"]


def test_every_error_is_collected() -> None:
    errors = errors_of(document(name="Bad", port=0, domain="x..y", image="UP", replicas=-1))
    fields = [e.split(":")[0] for e in errors]
    assert fields == ["spec.name", "spec.port", "spec.domain", "spec.image", "spec.replicas"]


def test_scalar_env_values_become_strings() -> None:
    spec = ServiceSpec.from_document(
        document(
            env=[
                {"name": "A", "value": 1},
                {"name": "B", "value": True},
                {"name": "C", "value": 1.5},
            ]
        )
    )
    assert spec.env == (EnvVar("A", "1"), EnvVar("B", "true"), EnvVar("C", "1.5"))


def test_yaml_env_values_keep_the_written_text() -> None:
    text = (
        "apiVersion: v1\nspec: {name: a, port: 1, domain: a.b, image: x, env: ["
        "{name: MODE, value: 0755}, {name: V, value: 1.10}, {name: Y, value: yes}, {name: N, value: 3}]}"
    )
    (spec,) = parse_specs(text)
    assert {e.name: e.value for e in spec.env} == {
        "MODE": "0755",
        "V": "1.10",
        "Y": "yes",
        "N": "3",
    }


def test_json_decimal_env_values_keep_their_digits() -> None:
    (spec,) = parse_specs(
        json.dumps(document(env=[{"name": "V", "value": 1.5}])).replace("1.5", "1.10")
    )
    assert spec.env == (EnvVar("V", "1.10"),)


@pytest.mark.parametrize("value", [[1], {"a": 1}, None])
def test_env_value_lists_maps_and_null_are_errors(value: object) -> None:
    (error,) = errors_of(document(env=[{"name": "A", "value": value}]))
    assert error.startswith("spec.env[0].value: must be a string, number or boolean")


def test_env_value_is_never_echoed_in_errors() -> None:
    errors = errors_of(document(env=[{"name": "A", "value": "s3cr3t\x00"}]))
    assert errors and all("s3cr3t" not in e for e in errors)


@pytest.mark.parametrize("name", ["1A", "A-B", "", "A B", 5])
def test_env_names_must_be_valid(name: object) -> None:
    (error,) = errors_of(document(env=[{"name": name, "value": "x"}]))
    assert error.startswith("spec.env[0].name: ")


def test_env_names_unique() -> None:
    errors = errors_of(document(env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]))
    assert errors == ['spec.env[1].name: "A" is already set by spec.env[0]']


def test_env_must_be_list_of_mappings() -> None:
    assert errors_of(document(env={"A": "1"}))[0].startswith("spec.env: must be a list")
    assert errors_of(document(env=["A=1"]))[0].startswith("spec.env[0]: must be a mapping")


def test_canonical_json_and_hashes_are_stable() -> None:
    a = ServiceSpec.from_document(
        document(env=[{"name": "B", "value": "2"}, {"name": "A", "value": "1"}])
    )
    b = ServiceSpec.from_document(
        json.loads(
            json.dumps(document(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]))
        )
    )
    assert a == b
    assert a.canonical_json() == b.canonical_json()
    assert a.spec_hash() == b.spec_hash()
    assert json.loads(a.canonical_json()) == a.to_document()
    assert ServiceSpec.from_document(a.to_document()) == a
    assert len(a.spec_hash()) == 16
    assert a.spec_hash() != ServiceSpec.from_document(document(port=1)).spec_hash()


def test_template_hash_ignores_replicas_and_domain() -> None:
    base = ServiceSpec.from_document(VALID)
    assert base.with_replicas(5).template_hash() == base.template_hash()
    assert (
        ServiceSpec.from_document(document(domain="other.example.com")).template_hash()
        == base.template_hash()
    )
    assert (
        ServiceSpec.from_document(document(image="repo/image:v2")).template_hash()
        != base.template_hash()
    )
    assert ServiceSpec.from_document(document(port=9000)).template_hash() != base.template_hash()
    assert (
        ServiceSpec.from_document(document(volumeMount="/d")).template_hash()
        != base.template_hash()
    )
    assert (
        ServiceSpec.from_document(document(env=[{"name": "A", "value": "1"}])).template_hash()
        != base.template_hash()
    )
    assert base.with_replicas(5).spec_hash() != base.spec_hash()


def test_spec_is_frozen_and_validates_when_built_directly() -> None:
    spec = ServiceSpec.from_document(VALID)
    with pytest.raises(AttributeError):
        spec.port = 1  # type: ignore[misc]
    with pytest.raises(SpecError):
        ServiceSpec(name="Bad", port=1, domain="a.b", image="x")
    with pytest.raises(SpecError):
        ServiceSpec(name="a", port=0, domain="a.b", image="x")


def test_multiple_yaml_documents() -> None:
    text = "\n---\n".join(
        json.dumps(document(name=n, domain=f"{n}.example.com")) for n in ("a", "b", "c")
    )
    assert [s.name for s in parse_specs("---\n" + text + "\n---\n")] == ["a", "b", "c"]


def test_json_array_of_documents() -> None:
    text = json.dumps([document(name="a", domain="a.x"), document(name="b", domain="b.x")])
    assert [s.name for s in parse_specs(text)] == ["a", "b"]


def test_errors_in_several_documents_carry_the_document_index() -> None:
    text = json.dumps([document(name="a", domain="a.x"), document(name="b", port=0)])
    with pytest.raises(SpecError) as info:
        parse_specs(text, "svc.json")
    assert [str(e) for e in info.value.errors] == [
        "documents[1].spec.port: 0 is not a port (1-65535)"
    ]
    assert str(info.value).startswith("svc.json: ")


def test_duplicate_names_and_domains_in_one_file() -> None:
    text = json.dumps(
        [
            document(name="a", domain="a.x"),
            document(name="a", domain="b.x"),
            document(name="c", domain="A.x"),
        ]
    )
    with pytest.raises(SpecError) as info:
        parse_specs(text)
    assert [str(e) for e in info.value.errors] == [
        'documents[1].spec.name: "a" is also declared in documents[0]',
        'documents[2].spec.domain: "a.x" is also declared in documents[0]',
    ]


@pytest.mark.parametrize("text", ["", "   \n", "---\n---\n"])
def test_empty_input(text: str) -> None:
    with pytest.raises(SpecError, match="no service spec found"):
        parse_specs(text)


def test_invalid_yaml_and_json_name_the_position() -> None:
    with pytest.raises(SpecError, match=r"invalid YAML at line 3 column 1"):
        parse_specs("apiVersion: v1\nspec: [unclosed\n")
    with pytest.raises(SpecError, match=r"invalid JSON at line 1"):
        parse_specs('{"apiVersion": "v1", "spec": {')


def test_yaml_and_json_give_the_same_spec() -> None:
    yaml_text = "apiVersion: v1\nspec:\n  name: web\n  port: 8081\n  domain: web.example.com\n  image: repo/image:tag\n"
    assert parse_specs(yaml_text) == parse_specs(json.dumps(VALID))
    assert load_documents(json.dumps(VALID)) == [VALID]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    [
        '{"apiVersion":"v1","spec":{"name":"a","port":1e999999999,"domain":"a.b","image":"x"}}',
        '{"apiVersion":"v1","spec":{"name":"a","port":1'
        + "0" * 5000
        + ',"domain":"a.b","image":"x"}}',
        "apiVersion: v1\nspec: {name: a, port: 1" + "0" * 5000 + ", domain: a.b, image: x}",
        '{"apiVersion":"v1","spec":{"name":"a","port":1,"replicas":-1e400,"domain":"a.b","image":"x"}}',
    ],
)
def test_huge_numbers_are_refused_quickly(text: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_specs(text)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"domain": "a..b"}, "spec.domain"),
        ({"domain": "1.2.3.4"}, "spec.domain"),
        ({"domain": "A.b"}, "spec.domain"),
        ({"image": "UP"}, "spec.image"),
        ({"name": "-x"}, "spec.name"),
        ({"replicas": MAX_REPLICAS + 1}, "spec.replicas"),
    ],
)
def test_a_spec_built_in_code_meets_the_documents_rules(
    changes: dict[str, object], field: str
) -> None:
    values: dict[str, object] = {"name": "a", "port": 1, "domain": "a.b", "image": "x"}
    with pytest.raises(SpecError) as info:
        ServiceSpec(**{**values, **changes})  # type: ignore[arg-type]
    assert [e.field for e in info.value.errors] == [field]
