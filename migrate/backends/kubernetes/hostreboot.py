"""The reboot a node task asks of a node's host, the way an operator would, and the record
it leaves of which way it went (pure: the scripts only; ``helpers`` runs them).

``plan --reboot-nodes`` once wrote ``b`` to ``/proc/sysrq-trigger``: an immediate reset,
no sync, no unmount, no service stopped (a kubelet, containerd, a database on the host).
Now the node task, a privileged pod in the host's PID namespace, enters the namespaces of
the host's PID 1 (``nsenter -t 1 -m -u -i -n -p``) and asks the host's init:

- ``systemctl reboot`` where systemd runs (``/run/systemd/system`` exists), else
  ``shutdown -r now``, else ``reboot``: services stopped, disks synced and unmounted;
- first it arms a bounded fallback on the host, outside the pod (whose container the
  shutdown stops with the kubelet): a transient systemd unit without default dependencies,
  so the shutdown does not stop it (without systemd: a detached host process). If the
  node is still up ``grace`` seconds later (a unit that hangs in its stop, an unmount that
  never ends), it syncs, remounts read-only and resets through sysrq (``s``, ``u``, ``b``);
- both ways write the host's ``RECORD`` first (synced), which ``record_script`` reads once
  the node is back: "orderly: systemctl reboot", or "forced: sysrq ... after systemctl
  reboot did not reboot within 120s". The reboot step puts it in the journal.

A host whose PID 1 cannot be entered (no host PID namespace, no ``nsenter``) is not
rebooted at all: the task fails with a line that starts with ``REFUSED``.

In the e2e lab the nodes are kind containers whose PID 1 is systemd: ``systemctl reboot``
there ends the container, not a machine, and the sysrq fallback in a privileged container
would reset the machine running the whole lab; so no e2e test reboots a node.
"""

from __future__ import annotations

import shlex

RECORD = "/var/lib/cni-migrate/last-reboot"  # on the host, written before the reboot
GRACE = 120.0  # seconds the orderly reboot has to take the node down before sysrq
UNIT = "cni-migrate-reboot-fallback"
REFUSED = "REFUSED"
ENTER_HOST = "nsenter -t 1 -m -u -i -n -p --"

# ``root``, below: the prefix of every path the scripts name ("" on a node; a directory
# standing in for the host's and the pod's files in tests). ``enter``: how the pod runs a
# command in the host's namespaces.


def grace_for(timeout: float) -> int:
    """The orderly reboot's bound, within the task's ``timeout``: half of it at most, so
    that a node reset by the fallback still has time to come back before the wait ends."""
    return max(int(min(GRACE, timeout / 2)), 10)


def fallback(grace: int, root: str = "") -> str:
    """The host's fallback, as a shell word to put in double quotes where ``$how`` names the
    orderly reboot: after ``grace`` seconds still up, record it, then sync (s), remount
    read-only (u) and reset (b), with a moment for each to finish."""
    sysrq = f"{root}/proc/sysrq-trigger"
    said = f"forced: sysrq (sync, remount read-only, reset) after $how did not reboot within {grace}s"
    return (
        f"sleep {grace}; echo '{said}' > {root}{RECORD}; sync; "
        f"echo s > {sysrq}; sleep 5; echo u > {sysrq}; sleep 2; echo b > {sysrq}"
    )


def host_script(grace: int, root: str = "") -> str:
    """What runs in the host's namespaces: pick the init's reboot, record it, arm the
    fallback, print the reboot command for the pod to run (and to say)."""
    record = f"{root}{RECORD}"
    return "\n".join(
        [
            "set -eu",
            f"if [ -d {root}/run/systemd/system ] && command -v systemctl >/dev/null; then how='systemctl reboot'",
            "elif command -v shutdown >/dev/null; then how='shutdown -r now'",
            "elif command -v reboot >/dev/null; then how='reboot'",
            f"else echo '{REFUSED}: the host has no systemctl, shutdown or reboot'; exit 1; fi",
            f"mkdir -p {record.rsplit('/', 1)[0]}",
            f'echo "orderly: $how" > {record}; sync',
            f'FALLBACK="{fallback(grace, root)}"',
            # Outside the pod, which the shutdown stops with the kubelet; without default
            # dependencies the shutdown does not stop it either.
            'if [ "$how" = "systemctl reboot" ]; then',
            f"  systemctl reset-failed {UNIT} >/dev/null 2>&1 || true",
            f'  systemd-run --quiet --collect --unit={UNIT} -p DefaultDependencies=no sh -c "$FALLBACK" >/dev/null',
            'else setsid sh -c "$FALLBACK" </dev/null >/dev/null 2>&1 & fi',
            'echo "$how"',
        ]
    )


def reboot_script(grace: int, root: str = "", enter: str = ENTER_HOST) -> str:
    """The node task's command (``sh -c``): the host's reboot through PID 1's namespaces,
    the way it went in the termination message before the node goes down."""
    log = f"{root}/dev/termination-log"
    return "\n".join(
        [
            f"how=$({enter} sh -c {shlex.quote(host_script(grace, root))}) || {{",
            f'  echo "{REFUSED}: cannot ask the host\'s init through PID 1 ($how)" > {log}; exit 1; }}',
            f'echo "orderly: $how; fallback: sysrq (s, u, b) if the node is still up after {grace}s" > {log}',
            f"exec {enter} $how",
        ]
    )


def record_script(root: str = "", enter: str = ENTER_HOST) -> str:
    """The node task that reads, once the node is back, which way its last reboot went."""
    log = f"{root}/dev/termination-log"
    return f"{enter} cat {root}{RECORD} > {log} 2>/dev/null || echo unknown > {log}"
