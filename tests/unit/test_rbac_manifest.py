"""deploy/rbac.yaml grants exactly the permissions cni-migrate checks for (rbac.PERMISSIONS).

The manifest is read as the API server's RBAC authorizer would: a ClusterRoleBinding grants
its ClusterRole's rules cluster-wide; a RoleBinding grants its Role's (or ClusterRole's)
rules in the binding's namespace. Only what is bound to the shipped ServiceAccount counts,
and a role nobody binds is a defect of its own.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrate.backends.rbac import PERMISSIONS, TOOL_NAMESPACE, TRAFFIC_NAMESPACE, TRAFFIC_PERMISSIONS

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"
SUBJECT = {"kind": "ServiceAccount", "name": "cni-migrate", "namespace": TOOL_NAMESPACE}
Permission = tuple[str, str, str, str]


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def roles(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(kind, namespace, name) -> rules."""
    return {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d.get("rules") or []
        for d in docs
        if d["kind"] in ("ClusterRole", "Role")
    }


def expand(rules: list[dict[str, Any]], namespace: str) -> list[Permission]:
    return [
        (verb, group, resource, namespace)
        for rule in rules
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    ]


def granted(docs: list[dict[str, Any]]) -> tuple[list[Permission], set[tuple[str, str, str]]]:
    """Every permission bound to the ServiceAccount (with repeats), and the roles used."""
    known = roles(docs)
    out: list[Permission] = []
    used: set[tuple[str, str, str]] = set()
    for d in docs:
        if d["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        assert SUBJECT in d["subjects"], f"{d['kind']} {d['metadata']['name']} binds someone else"
        namespace = d["metadata"].get("namespace", "") if d["kind"] == "RoleBinding" else ""
        ref = d["roleRef"]
        key = (ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"])
        assert key in known, f"{d['kind']} {d['metadata']['name']} refers to a role the manifest lacks: {key}"
        used.add(key)
        out += expand(known[key], namespace)
    return out, used


def test_grants_exactly_the_permissions_cni_migrate_checks(docs: list[dict[str, Any]]) -> None:
    permissions, _ = granted(docs)
    checked = set(PERMISSIONS) | set(TRAFFIC_PERMISSIONS)
    extra = sorted(set(permissions) - checked)
    missing = sorted(checked - set(permissions))
    assert not extra, f"deploy/rbac.yaml grants more than rbac.PERMISSIONS + TRAFFIC_PERMISSIONS: {extra}"
    assert not missing, f"deploy/rbac.yaml lacks permissions cni-migrate needs: {missing}"
    repeated = sorted(p for p, n in Counter(permissions).items() if n > 1)
    assert not repeated, f"granted twice (keep one rule per permission): {repeated}"


def test_no_wildcards_and_no_unbound_roles(docs: list[dict[str, Any]]) -> None:
    for rules in roles(docs).values():
        for rule in rules:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in (rule.get(field) or []), f"wildcard in {field}: {rule}"
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
    _, used = granted(docs)
    assert set(roles(docs)) == used, f"roles nobody binds: {sorted(set(roles(docs)) - used)}"


def test_ships_the_namespace_and_service_account_it_binds(docs: list[dict[str, Any]]) -> None:
    kinds = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs}
    assert ("Namespace", "", TOOL_NAMESPACE) in kinds
    assert ("ServiceAccount", TOOL_NAMESPACE, "cni-migrate") in kinds
    assert ("Namespace", "", TRAFFIC_NAMESPACE) in kinds  # the traffic watch's Role lives there
