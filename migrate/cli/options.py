"""Options shared by several commands, declared once: output formats, the cluster flags,
the helper pods' images, and the run options ``apply`` and ``resume`` both take
(``RunOptions``, with ``with_run_options`` giving a command their one signature)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer

from migrate import traffic
from migrate.hooks import DEFAULT_DIR as DEFAULT_HOOKS_DIR


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class LogFormat(StrEnum):
    console = "console"
    json = "json"


FORMATS = ", ".join(f.value for f in Format)


def output_format(value: str) -> Format:
    """``-o json``, ``-o=json`` (kubectl takes both) or ``--output=json``: the output format.
    A file name is not a format: files are written with ``--out`` (``plan``, ``runbook``)."""
    text = value[1:] if value.startswith("=") else value
    try:
        return Format(text.strip().lower())
    except ValueError:
        # -o meant a file for plan and runbook before (issue 29): say where files go now.
        hint = "; plan and runbook write their files with --out FILE" if any(c in value for c in "./") else ""
        raise typer.BadParameter(f"{value!r} is not an output format ({FORMATS}){hint}") from None


def format_names(incomplete: str) -> list[str]:
    return [f.value for f in Format if f.value.startswith(incomplete)]


OutputOpt = Annotated[
    Format,
    typer.Option(
        "-o",
        "--output",
        parser=output_format,
        autocompletion=format_names,
        metavar="FORMAT",
        help=f"Output format: {FORMATS}.",
    ),
]
LogOpt = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        metavar="FORMAT",
        help="console: progress on the terminal only; json: also every event as a JSON line on stderr "
        "(the audit log's format; the audit log under the state directory is written either way).",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
KubeconfigOpt = Annotated[
    Optional[str], typer.Option("--kubeconfig", metavar="FILE", help="Path to a kubeconfig (else $KUBECONFIG).")
]
ContextOpt = Annotated[
    Optional[str],
    typer.Option("--context", metavar="NAME", help="kubeconfig context (default: the one the plan was made for)."),
]
HooksDirOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--hooks-dir",
        metavar="DIR",
        help=f"Directory of operator hooks, which must exist (default: {DEFAULT_HOOKS_DIR}/ if present).",
    ),
]
HookTimeoutOpt = Annotated[float, typer.Option("--hook-timeout", metavar="SECONDS", help="Seconds each hook may run.")]
WindowOpt = Annotated[
    Optional[str],
    typer.Option("--window-end", metavar="TIME", help="End of the maintenance window (RFC 3339 or HH:MM local)."),
]
GuidedOpt = Annotated[
    bool,
    typer.Option(
        "--guided", help="Ask before each wave: continue, skip a node, pause, roll back the last wave, or abort."
    ),
]
EachNodeOpt = Annotated[bool, typer.Option("--confirm-each-node", help="With --guided, also ask before each node.")]
CanaryPauseOpt = Annotated[
    bool, typer.Option("--pause-after-canary", help="Stop (resumable) after the canary wave, to inspect it.")
]
SoakOpt = Annotated[
    Optional[str],
    typer.Option("--soak", metavar="DURATION", help="Wait this long after each wave before the next (e.g. 2m)."),
]
TrafficWatchOpt = Annotated[
    bool,
    typer.Option(
        "--traffic-watch",
        help="Run a prober on every node for the run (the probe image's netexec and curl); a node whose "
        "swap and validation saw more than --max-probe-failures failed requests fails validation.",
    ),
]
MaxProbeFailuresOpt = Annotated[
    Optional[int],
    typer.Option(
        "--max-probe-failures",
        metavar="N",
        help=f"Failed probe requests a node's window may see (default {traffic.DEFAULT_MAX_FAILURES}).",
    ),
]
ProbeImageOpt = Annotated[
    Optional[str],
    typer.Option(
        "--probe-image", metavar="IMAGE", help="Image of the validation probe pods (default: the agnhost e2e image)."
    ),
]
NodeImageOpt = Annotated[
    Optional[str],
    typer.Option(
        "--node-image", metavar="IMAGE", help="Image of the node-task and DNS probe pods (default: busybox 1.36.1)."
    ),
]
HelmOpt = Annotated[
    Optional[str],
    typer.Option(
        "--helm", metavar="PATH", help="The helm binary, for plans made with --install-cilium (else helm on PATH)."
    ),
]
PlanFileArg = Annotated[Path, typer.Argument(metavar="PLANFILE", help="The plan file (written by plan).")]


@dataclass(frozen=True)
class RunOptions:
    """How ``apply`` and ``resume`` run a plan; the same flags for both."""

    yes: bool = False
    log_format: LogFormat = LogFormat.console
    kubeconfig: str | None = None
    context: str | None = None
    hooks_dir: Path | None = None  # None: the default hooks/, if there is one
    hook_timeout: float = 60.0
    window_end: str | None = None
    guided: bool = False
    confirm_each_node: bool = False
    pause_after_canary: bool = False
    soak: str | None = None
    probe_image: str | None = None
    node_image: str | None = None
    helm: str | None = None
    traffic_watch: bool = False
    max_probe_failures: int | None = None


def with_run_options(body: Callable[[Path, RunOptions], None]) -> Callable[..., None]:
    """``body(planpath, opts)`` as a command of a plan file and every run option: the one
    signature of ``apply`` and ``resume``. The command takes ``body``'s name and help; not
    ``functools.wraps``, whose ``__wrapped__`` would show typer ``body``'s signature."""

    def command(
        planpath: PlanFileArg,
        yes: YesOpt = False,
        log_format: LogOpt = LogFormat.console,
        kubeconfig: KubeconfigOpt = None,
        context: ContextOpt = None,
        hooks_dir: HooksDirOpt = None,
        hook_timeout: HookTimeoutOpt = 60.0,
        window_end: WindowOpt = None,
        guided: GuidedOpt = False,
        confirm_each_node: EachNodeOpt = False,
        pause_after_canary: CanaryPauseOpt = False,
        soak: SoakOpt = None,
        probe_image: ProbeImageOpt = None,
        node_image: NodeImageOpt = None,
        helm: HelmOpt = None,
        traffic_watch: TrafficWatchOpt = False,
        max_probe_failures: MaxProbeFailuresOpt = None,
    ) -> None:
        opts = RunOptions(
            yes=yes,
            log_format=log_format,
            kubeconfig=kubeconfig,
            context=context,
            hooks_dir=hooks_dir,
            hook_timeout=hook_timeout,
            window_end=window_end,
            guided=guided,
            confirm_each_node=confirm_each_node,
            pause_after_canary=pause_after_canary,
            soak=soak,
            probe_image=probe_image,
            node_image=node_image,
            helm=helm,
            traffic_watch=traffic_watch,
            max_probe_failures=max_probe_failures,
        )
        body(planpath, opts)

    command.__name__ = body.__name__
    command.__qualname__ = body.__qualname__
    command.__doc__ = body.__doc__
    return command
