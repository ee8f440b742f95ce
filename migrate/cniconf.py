"""Which CNI a node's ``/etc/cni/net.d`` listing selects. Pure; shared by every backend.

The container runtime uses the lexically first ``*.conflist``/``*.conf`` file. Cilium in
migration mode writes ``05-cilium.conflist`` and renames other configurations to
``*.cilium_bak``; our rollback sets ``05-cilium.conflist`` aside and renames them back.
"""

from __future__ import annotations

from collections.abc import Iterable

from migrate.model import Cni

CALICO_CONF = "10-calico.conflist"
CILIUM_CONF = "05-cilium.conflist"
BACKUP_SUFFIX = ".cilium_bak"
SET_ASIDE_SUFFIX = ".cni-migrate-bak"


def active(files: Iterable[str]) -> str | None:
    configs = sorted(f for f in files if f.endswith((".conflist", ".conf")))
    return configs[0] if configs else None


def cni_from_files(files: Iterable[str]) -> Cni:
    first = active(files)
    if first is None:
        return Cni.UNKNOWN
    if "cilium" in first:
        return Cni.CILIUM
    if "calico" in first:
        return Cni.CALICO
    return Cni.UNKNOWN


def after_agent_start(files: Iterable[str], labelled: bool) -> list[str]:
    """The directory after a Cilium agent in migration mode starts on the node: with the
    migration label (its CiliumNodeConfig) it writes its conflist and renames the others
    to ``*.cilium_bak``; without it, it leaves the node alone (``cni.customConf``)."""
    files = list(files)
    if not labelled:
        return sorted(files)
    renamed = [f if f.endswith(BACKUP_SUFFIX) or "cilium" in f else f + BACKUP_SUFFIX for f in files]
    return sorted([f for f in renamed if not f.startswith(CILIUM_CONF)] + [CILIUM_CONF])


def after_restore(files: Iterable[str]) -> list[str]:
    """The directory after our rollback's node task: Cilium's conflist set aside, Calico's
    ``*.cilium_bak`` renamed back."""
    restored = set()
    for f in files:
        if f == CILIUM_CONF:
            restored.add(CILIUM_CONF + SET_ASIDE_SUFFIX)
        elif f.endswith(BACKUP_SUFFIX):
            restored.add(f[: -len(BACKUP_SUFFIX)])
        else:
            restored.add(f)
    return sorted(restored)
