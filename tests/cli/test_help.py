"""kubectl's habits in the help and the version: ``-h`` like ``--help`` everywhere, ``--version``
and ``version -o json``, ``-o`` a format with ``=`` accepted, and help that reads clean at 80
columns (real metavars, no option name cut, a description for every command)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from migrate.plan import SCHEMA

KUBE_CACHE = Path.home() / ".cache" / "cni-migrate" / "kube"  # where tools/kube/build keeps kubectl


def commands(cli, *group: str) -> dict[str, str]:
    """The commands a group's help lists, each with its description."""
    text = cli(*group, "-h", env={"COLUMNS": "80"}).out
    listed = text.split("Commands:\n", 1)[1]
    return dict(re.findall(r"^  (\S+) +(.*)$", listed, re.M))


@pytest.fixture(scope="module")
def every_command(tmp_path_factory):
    from tests.cli.conftest import CLI

    cli = CLI(tmp_path_factory.mktemp("help"))
    top = commands(cli)
    paths = [(name,) for name in top if name != "sim"] + [("sim", name) for name in commands(cli, "sim")]
    return cli, top, [(), ("sim",), *paths]


def test_every_command_has_a_description_that_fits(every_command):
    cli, top, paths = every_command
    assert {"plan", "apply", "version", "sim"} <= set(top)
    for path in [(), ("sim",)]:
        for name, text in commands(cli, *path).items():
            assert text and not text.endswith("..."), (path, name, text)


def test_help_reads_clean_at_80_columns_and_h_is_help(every_command):
    cli, _, paths = every_command
    for path in paths:
        short = cli(*path, "-h", env={"COLUMNS": "80"})
        assert short.code == 0, (path, short.err)
        if path in ((), ("plan",), ("sim", "create")):
            assert short.out == cli(*path, "--help", env={"COLUMNS": "80"}).out
        text = short.out
        # No Python types for metavars, no braces, no cut names, no --no- twins of switches.
        for bad in ("<bool>", "<str>", "<int>", "<path>", "<list", "{", "…", "--no-"):
            assert bad not in text, (path, bad, text)
        assert not re.search(r"--[a-z-]*-\n", text), (path, "an option name broken across lines", text)
        assert all(len(line) <= 80 for line in text.splitlines()), path
        summary = text.split("\n\n")[1].strip()
        assert summary and not summary.startswith(("Options", "Arguments")), (path, "no description")


def test_version_flag_and_command_name_the_version_and_the_plan_schema(cli):
    r = cli("--version")
    assert (r.code, r.out) == (0, f"cni-migrate {version('cni-migrate')}\n")
    record = json.loads(cli("version", "-o", "json").out)
    assert record == {"version": version("cni-migrate"), "planSchema": SCHEMA}
    assert yaml.safe_load(cli("version", "--output=yaml").out) == record
    assert json.loads(cli("version", "-o=json").out) == record
    assert SCHEMA in cli("version").out


def test_o_is_a_format_everywhere_and_a_file_name_says_where_files_go(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    assert json.loads(cli("sim", "show", "c1", "-o=json").out)["nodes"][0]["name"] == "cp-1"
    assert yaml.safe_load(cli("sim", "show", "c1", "--output=yaml").out)["nodes"][0]["name"] == "cp-1"
    r = cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "-o", "p.yaml")
    assert r.code == 2 and r.err.count("\n") == 1
    assert (
        "'p.yaml' is not an output format (table, json, yaml); plan and runbook write their files with --out" in r.err
    )
    assert not (cli.cwd / "p.yaml").exists()
    r = cli("version", "-o", "xml")
    assert r.code == 2 and "'xml' is not an output format (table, json, yaml)" in r.err and "--out FILE" not in r.err


def test_runbook_o_with_a_file_says_files_go_to_out(cli):
    cli("sim", "create", "c1", "--nodes", "3")
    assert cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "--out", "p.yaml").code == 0
    r = cli("runbook", "p.yaml", "-o", "r.md")
    assert (r.code, r.err) == (2, "error: No such option: -o; files are written with --out FILE (see --help)\n")
    assert not (cli.cwd / "r.md").exists()
    r = cli("runbook", "p.yaml", "--out", "r.md")
    assert r.code == 0 and (cli.cwd / "r.md").read_text().startswith("# Runbook")


def test_shell_completion_is_installable_and_completes_commands_and_formats(cli):
    # The shell named, not detected from the process tree (under make it is sh, which
    # completion does not support): typer's switch for exactly that.
    script = cli("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert script.code == 0 and "complete -o default -F _cni_migrate_completion cni-migrate" in script.out
    assert "--install-completion" in cli("-h").out

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {"_CNI_MIGRATE_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
        return cli(env=env).out.split()

    assert complete("cni-migrate pl") == ["plan"]
    assert complete("cni-migrate status p.yaml -o ") == ["table", "json", "yaml"]
    assert complete("cni-migrate sim ") == ["create", "show", "delete", "list"]


def test_kubectl_runs_it_as_its_plugin_and_help_shows_kubectl_cni_migrate(cli):
    plugin = shutil.which("kubectl-cni_migrate", path=str(Path(sys.executable).parent))
    assert plugin, "pip install -e . installs the kubectl-cni_migrate script"
    r = cli.run_exe(plugin, "plan", "-h")
    assert r.code == 0 and r.out.startswith("Usage: kubectl cni-migrate plan [OPTIONS]")
    kubectl = shutil.which("kubectl") or next(iter(sorted(KUBE_CACHE.glob("kubectl-*/bin/kubectl"))), None)
    if kubectl is None:
        pytest.skip("no kubectl here to run the plugin through")
    r = cli.run_exe(str(kubectl), "cni-migrate", "version", "-o", "json", path=str(Path(plugin).parent))
    assert r.code == 0, r.err
    assert json.loads(r.out)["planSchema"] == SCHEMA
