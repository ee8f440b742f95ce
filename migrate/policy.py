"""The policy report: what happens to each network policy when Calico goes.

Kubernetes NetworkPolicies stay as they are: Cilium enforces them once migration mode ends
(``finalize``), the same way except for an ``ipBlock`` that selects pods or nodes, which
Calico matches by address and Cilium never does: such a policy is kept with a
CiliumNetworkPolicy to apply beside it that selects those by identity (or, where the ipBlock
cuts a range, reported untranslatable).
Calico's own NetworkPolicy and GlobalNetworkPolicy die with Calico, so each is translated
into a CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy where a faithful translation
exists, and otherwise reported with every reason it has none: every rule is examined, and
the verdict lists each reason of each rule. Pure: the input is the policies as the API
returns them (plain dicts) and the cluster's address ranges (``ClusterRanges``), the
output data.

Faithful means the same traffic is allowed and denied. What Cilium cannot say, or says
differently, makes a policy untranslatable rather than approximated:
- selector expressions with ``||``, ``!`` of a group, or functions other than ``has()``;
- rule actions Log and Pass (Calico tiers), host-endpoint options (preDNAT, doNotTrack,
  applyOnForward), ``serviceAccounts``, ``services``, ``notSelector``, ``notPorts``,
  ``notProtocol``, numeric protocols, source ports, HTTP match;
- an Allow rule before a Deny rule in the same direction: Calico evaluates rules in order,
  Cilium always lets a deny win;
- addresses (``nets``, ``notNets``, ipBlock) that select part of the pods, part of the
  nodes, or the Service range: Cilium selects pods and nodes by identity, never by
  address. Addresses that select every pod and/or every node, or none, translate exactly
  (endpoints, entities, and the CIDR for the rest): ``policyaddresses`` says how and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from migrate import policyaddresses
from migrate.policyaddresses import NAMESPACE_LABEL, ClusterRanges, Untranslatable

CALICO_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy")
NAMESPACE_LABELS_PREFIX = "k8s:io.cilium.k8s.namespace.labels."
PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class PolicyVerdict:
    kind: str  # NetworkPolicy (Kubernetes) | CalicoNetworkPolicy | GlobalNetworkPolicy
    namespace: str
    name: str
    outcome: str  # kept | translated | untranslatable
    reasons: tuple[str, ...] = ()
    cilium: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    @property
    def file_name(self) -> str:
        """Where ``policy-report --write`` puts the Cilium policy (a translation, or the one to
        apply beside a kept NetworkPolicy), named as the Cilium policy is."""
        assert self.cilium is not None
        named = self.cilium["metadata"]["name"]
        return f"{self.cilium['kind'].lower()}-{self.namespace + '-' if self.namespace else ''}{named}.yaml"

    def to_record(self) -> dict[str, Any]:
        """The stable JSON shape of one policy in ``policy-report -o json``."""
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "cilium": self.cilium,
        }


# -- Calico selectors -----------------------------------------------------------------------------
_TERM = re.compile(
    r"""^\s*(?:
        (?P<all>all\(\s*\))
      | (?P<nothas>!\s*has\(\s*(?P<nk>[\w./-]+)\s*\))
      | (?P<has>has\(\s*(?P<hk>[\w./-]+)\s*\))
      | (?P<key>[\w./-]+)\s*(?P<op>==|!=|not\s+in|in)\s*(?P<value>'[^']*'|"[^"]*"|\{[^}]*\})
    )\s*$""",
    re.VERBOSE,
)


def _values(text: str) -> tuple[str, ...]:
    return tuple(sorted(v.strip().strip("'\"") for v in text.strip("{}").split(",") if v.strip()))


def label_selector(expression: str, *, prefix: str = "") -> dict[str, Any]:
    """A Calico selector as a Kubernetes label selector (keys prefixed with ``prefix``)."""
    expression = (expression or "").strip()
    if not expression or expression == "all()":
        return {}
    if "||" in expression or "(" in expression.replace("has(", "").replace("all(", ""):
        raise Untranslatable(f"selector {expression!r} uses || or grouping; a Cilium selector is one AND of terms")
    labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for term in expression.split("&&"):
        m = _TERM.match(term)
        if m is None:
            raise Untranslatable(f"selector term {term.strip()!r} has no label-selector form")
        if m["all"]:
            continue
        if m["has"]:
            expressions.append({"key": prefix + m["hk"], "operator": "Exists"})
        elif m["nothas"]:
            expressions.append({"key": prefix + m["nk"], "operator": "DoesNotExist"})
        else:
            key, op, value = prefix + m["key"], re.sub(r"\s+", " ", m["op"]), m["value"]
            if op == "==":
                labels[key] = value.strip("'\"")
            elif op == "!=":
                expressions.append({"key": key, "operator": "NotIn", "values": [value.strip("'\"")]})
            else:
                operator = "In" if op == "in" else "NotIn"
                expressions.append({"key": key, "operator": operator, "values": list(_values(value))})
    selector: dict[str, Any] = {}
    if labels:
        selector["matchLabels"] = labels
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def _merge(*selectors: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in selectors:
        if s.get("matchLabels"):
            out.setdefault("matchLabels", {}).update(s["matchLabels"])
        if s.get("matchExpressions"):
            out.setdefault("matchExpressions", []).extend(s["matchExpressions"])
    return out


def _namespace_selector(expression: str) -> dict[str, Any]:
    """A Calico namespaceSelector as labels on Cilium's namespace-label identity keys;
    ``all()`` means every namespace."""
    if (expression or "").strip() == "all()":
        return {"matchExpressions": [{"key": NAMESPACE_LABEL, "operator": "Exists"}]}
    return label_selector(expression, prefix=NAMESPACE_LABELS_PREFIX)


# -- rules -----------------------------------------------------------------------------------------
def _ports(rule: dict[str, Any], destination: dict[str, Any]) -> list[dict[str, Any]]:
    protocol = rule.get("protocol")
    ports = destination.get("ports") or []
    if protocol is None:
        if ports:
            raise Untranslatable("ports without a protocol")
        return []
    if not isinstance(protocol, str) or protocol.upper() not in PORT_PROTOCOLS:
        raise Untranslatable(f"protocol {protocol!r} is not TCP, UDP or SCTP")
    proto = protocol.upper()
    if not ports:
        return [{"ports": [{"port": "0", "protocol": proto}]}]  # port 0: every port of the protocol
    entries = []
    for p in ports:
        port, extra = _port(p)
        entries.append({"port": port, "protocol": proto, **extra})
    return [{"ports": entries}]


def _port(value: Any) -> tuple[str, dict[str, Any]]:
    text = str(value)
    if ":" in text:
        low, high = text.split(":", 1)
        return low, {"endPort": int(high)}
    return text, {}


def _peer(side: dict[str, Any], direction: str, index: int, ranges: ClusterRanges) -> list[dict[str, Any]] | None:
    """The other end of a rule: endpoints (selector, namespaceSelector) or addresses (nets,
    notNets), as Cilium peers, one per L3 kind (``policyaddresses`` says which); None when
    the rule names no peer (every peer), [] when its addresses select no peer Cilium sees."""
    word = "from" if direction == "ingress" else "to"
    selector = side.get("selector")
    ns_selector = side.get("namespaceSelector")
    nets, not_nets = list(side.get("nets") or []), list(side.get("notNets") or [])
    if selector is not None or ns_selector is not None:
        if nets or not_nets:
            raise Untranslatable(
                f"{direction} rule {index} matches both endpoints and nets: an AND Cilium cannot express"
            )
        endpoints = _merge(label_selector(selector or ""), _namespace_selector(ns_selector) if ns_selector else {})
        return [{f"{word}Endpoints": [endpoints]}]
    if not nets and not not_nets:
        return None
    shown = f"{direction} rule {index} " + " ".join(
        f"{key} {', '.join(map(str, value))}" for key, value in (("nets", nets), ("notNets", not_nets)) if value
    )
    return policyaddresses.select(nets, not_nets, direction, ranges, shown).peers(word)


UNSUPPORTED_SIDE = {
    "notSelector": "notSelector",
    "notPorts": "notPorts",
    "serviceAccounts": "serviceAccounts",
    "services": "services",
}


def _rule(rule: dict[str, Any], direction: str, index: int, ranges: ClusterRanges) -> tuple[str, list[dict[str, Any]]]:
    """One Calico rule -> its Cilium section and rules (one per peer kind, each with the
    ports). Raises Untranslatable with every reason it has none."""
    problems: list[str] = []
    action = rule.get("action", "Allow")
    if action not in ("Allow", "Deny"):
        problems.append(f"{direction} rule action {action} has no Cilium equivalent")
    problems += [
        f"{direction} rule uses {key}" for key in ("notProtocol", "http", "icmp", "notICMP", "ipVersion") if key in rule
    ]
    source, destination = rule.get("source") or {}, rule.get("destination") or {}
    for label, side in (("source", source), ("destination", destination)):
        problems += [f"{direction} rule {label} uses {what}" for key, what in UNSUPPORTED_SIDE.items() if side.get(key)]
    peer_side, local_side = (source, destination) if direction == "ingress" else (destination, source)
    if any(local_side.get(k) for k in ("selector", "nets", "notNets", "namespaceSelector")):
        problems.append(f"{direction} rule narrows the policy's own endpoints by selector or nets")
    if source.get("ports"):
        problems.append(f"{direction} rule matches source ports; Cilium matches destination ports only")
    peers: list[dict[str, Any]] | None = []
    ports: list[dict[str, Any]] = []
    try:
        peers = _peer(peer_side, direction, index, ranges)
    except Untranslatable as exc:
        problems += exc.reasons
    try:
        ports = _ports(rule, destination)
    except Untranslatable as exc:
        problems += exc.reasons
    if peers == [] and action == "Deny" and direction == "ingress":
        problems.append(
            f"ingress rule {index} denies addresses that reach the pod only from its own host (remote nodes come "
            "through Calico's tunnel from pool addresses), which Cilium always lets in (allow-localhost)"
        )
    if problems:
        raise Untranslatable(*problems)
    if peers is None:
        # No peer: every peer. (An empty Cilium rule would match nothing.)
        peers = [{} if ports else {"fromEntities" if direction == "ingress" else "toEntities": ["all"]}]
    bodies = [{**peer, **({"toPorts": ports} if ports else {})} for peer in peers]
    return (direction if action == "Allow" else f"{direction}Deny"), bodies


def _order_safe(rules: list[dict[str, Any]], direction: str) -> None:
    seen_allow = False
    for rule in rules:
        action = rule.get("action", "Allow")
        if action == "Allow":
            seen_allow = True
        elif action == "Deny" and seen_allow:
            raise Untranslatable(
                f"{direction}: a Deny rule after an Allow rule; Calico applies the first match, Cilium always "
                "lets a deny win"
            )


def addresses(obj: dict[str, Any]) -> tuple[str, ...]:
    """The CIDRs a policy's rules name, sorted: a Kubernetes NetworkPolicy's ipBlocks (cidr
    and except), a Calico policy's nets and notNets on either side."""
    spec = obj.get("spec") or {}
    found: set[str] = set()
    for direction, side_key in (("ingress", "from"), ("egress", "to")):
        for rule in spec.get(direction) or []:
            if not isinstance(rule, dict):
                continue
            for peer in rule.get(side_key) or []:  # Kubernetes
                block = (peer or {}).get("ipBlock") or {}
                found.update(str(c) for c in [block.get("cidr"), *(block.get("except") or [])] if c)
            for side in ("source", "destination"):  # Calico
                found.update(str(c) for key in ("nets", "notNets") for c in (rule.get(side) or {}).get(key) or [])
    return tuple(sorted(found))


def _kubernetes_ports(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """A NetworkPolicy rule's ports as Cilium's toPorts (no port: every port of the protocol)."""
    entries = []
    for p in rule.get("ports") or []:
        port = (p or {}).get("port")
        entry: dict[str, Any] = {
            "port": "0" if port is None else str(port),
            "protocol": (p or {}).get("protocol") or "TCP",
        }
        if (p or {}).get("endPort") is not None:
            entry["endPort"] = int(p["endPort"])
        entries.append(entry)
    return [{"ports": entries}] if entries else []


def _kubernetes(obj: dict[str, Any], ranges: ClusterRanges) -> PolicyVerdict:
    """A Kubernetes NetworkPolicy: kept, as Cilium enforces it. Except where an ipBlock
    selects pods or nodes here, which Calico matched and Cilium's ipBlock (a CIDR rule) never
    does: then the verdict carries a CiliumNetworkPolicy to apply beside it that selects them
    by identity, for the same pods and ports (allow rules add up, so the two together allow
    what Calico did), or the reasons there is none."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    types = spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))
    reasons: list[str] = []
    found: list[str] = []
    sections: dict[str, list[dict[str, Any]]] = {}
    for direction, side_key in (("ingress", "from"), ("egress", "to")):
        if direction.capitalize() not in types:
            continue  # Kubernetes ignores the rules of a direction the policy does not list
        word = "from" if direction == "ingress" else "to"
        for index, rule in enumerate(spec.get(direction) or [], 1):
            for peer in (rule or {}).get(side_key) or []:
                block = (peer or {}).get("ipBlock")
                if not block:
                    continue
                excepted = [str(e) for e in block.get("except") or []]
                shown = f"{direction} rule {index} ipBlock {block.get('cidr')}" + (
                    f" except {', '.join(excepted)}" if excepted else ""
                )
                try:
                    chosen = policyaddresses.select([str(block.get("cidr"))], excepted, direction, ranges, shown)
                except Untranslatable as exc:
                    reasons += exc.reasons
                    continue
                if not chosen.in_cluster:
                    continue
                found.append(shown)
                ports = _kubernetes_ports(rule)
                for body in chosen.peers(word):
                    if not any("CIDR" in key for key in body):  # the NetworkPolicy itself allows those
                        sections.setdefault(direction, []).append({**body, **({"toPorts": ports} if ports else {})})
    if reasons:
        return PolicyVerdict("NetworkPolicy", namespace, name, "untranslatable", tuple(reasons))
    if not found:
        return PolicyVerdict(
            "NetworkPolicy", namespace, name, "kept", ("Cilium enforces Kubernetes NetworkPolicies as they are",)
        )
    beside = f"{name}-in-cluster"
    selector = {k: v for k, v in (spec.get("podSelector") or {}).items() if k in ("matchLabels", "matchExpressions")}
    supplement = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": beside, "namespace": namespace},
        "spec": {"endpointSelector": selector, **sections},
    }
    note = (
        f"{'; '.join(found)}: selects pods or nodes under Calico, which Cilium's ipBlock (a CIDR rule) never does; "
        f"kept, with the CiliumNetworkPolicy {beside} to apply beside it for those"
    )
    return PolicyVerdict("NetworkPolicy", namespace, name, "kept", (note,), supplement)


def translate(obj: dict[str, Any], ranges: ClusterRanges) -> PolicyVerdict:
    """One policy object (Kubernetes or Calico) -> its verdict, with the Cilium policy, its
    addresses judged against the cluster's ``ranges``. Every rule is examined; an
    untranslatable verdict lists every reason found."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    api = obj.get("apiVersion", "")
    kind = obj.get("kind", "")
    if api.startswith("networking.k8s.io") and kind == "NetworkPolicy":
        return _kubernetes(obj, ranges)
    if kind not in CALICO_KINDS:
        return PolicyVerdict(kind, namespace, name, "untranslatable", (f"unknown policy kind {api}/{kind}",))
    clusterwide = kind == "GlobalNetworkPolicy"
    shown = kind if clusterwide else "CalicoNetworkPolicy"
    reasons: list[str] = []
    for key in ("preDNAT", "doNotTrack", "applyOnForward"):
        if spec.get(key):
            reasons.append(f"{key}: a host-endpoint policy, not a pod policy")
    if spec.get("serviceAccountSelector"):
        reasons.append("serviceAccountSelector")
    if spec.get("tier") not in (None, "", "default"):
        reasons.append(f"tier {spec['tier']!r}: Cilium has no policy tiers")
    notes: list[str] = []  # what a translated verdict says beside it
    cilium_spec: dict[str, Any] = {}
    try:
        selector = label_selector(spec.get("selector", ""))
        if clusterwide and spec.get("namespaceSelector"):
            selector = _merge(selector, _namespace_selector(spec["namespaceSelector"]))
        cilium_spec["endpointSelector"] = selector
    except Untranslatable as exc:
        reasons += exc.reasons
    types = spec.get("types") or (["Ingress"] + (["Egress"] if spec.get("egress") else []))
    for direction in ("ingress", "egress"):
        if direction.capitalize() not in types:
            continue
        rules = spec.get(direction) or []
        sections: dict[str, list[dict[str, Any]]] = {}
        try:
            _order_safe(rules, direction)
        except Untranslatable as exc:
            reasons += exc.reasons
        for index, rule in enumerate(rules, 1):
            try:
                section, bodies = _rule(rule, direction, index, ranges)
            except Untranslatable as exc:
                reasons += exc.reasons
                continue
            if not bodies:
                notes.append(
                    f"{direction} rule {index} is left out: its addresses select no peer but, at most, the pod's "
                    "own host, which Cilium always lets in (allow-localhost)"
                )
                continue
            sections.setdefault(section, []).extend(bodies)
        if direction not in sections:
            # Calico: a selected endpoint with no allow rule in this direction denies all of it.
            sections[direction] = [{}]
        cilium_spec.update(sections)
    if reasons:
        return PolicyVerdict(shown, namespace, name, "untranslatable", tuple(reasons))
    reasons = notes
    if spec.get("order") is not None and any(k.endswith("Deny") for k in cilium_spec):
        reasons.append("Calico's order does not carry over: Cilium applies every deny before any allow")
    out: dict[str, Any] = {
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumClusterwideNetworkPolicy" if clusterwide else "CiliumNetworkPolicy",
        "metadata": {"name": name, **({"namespace": namespace} if namespace and not clusterwide else {})},
        "spec": cilium_spec,
    }
    return PolicyVerdict(shown, namespace, name, "translated", tuple(reasons), out)


def report(objects: list[dict[str, Any]], ranges: ClusterRanges) -> list[PolicyVerdict]:
    verdicts = [translate(o, ranges) for o in objects]
    return sorted(verdicts, key=lambda v: (v.kind, v.namespace, v.name))
