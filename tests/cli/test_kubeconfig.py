"""kubeconfig and context handling: every defect is exit 2 and one line, before any write."""

from __future__ import annotations

import pytest
import yaml


def kubeconfig(server: str = "https://127.0.0.1:1", contexts: int = 1) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": f"ctx{i}", "context": {"cluster": "c", "user": "u"}} for i in range(contexts)],
        "current-context": "ctx0" if contexts else "",
    }


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, ("--kubeconfig", "nope.yaml"), "does not exist"),
        ("{{{ not yaml", ("--kubeconfig", "k.yaml"), "not valid YAML"),
        (kubeconfig(contexts=0), ("--kubeconfig", "k.yaml"), "kubeconfig is unusable"),
        (kubeconfig(), ("--kubeconfig", "k.yaml", "--context", "missing"), "context 'missing' is not in"),
        (kubeconfig(), ("--kubeconfig", "k.yaml"), "cannot use the API server https://127.0.0.1:1"),
        ("just a string", ("--kubeconfig", "k.yaml"), "kubeconfig"),
    ],
)
def test_bad_kubeconfigs_are_one_line_bad_input(cli, setup, args, message):
    if setup is not None:
        (cli.cwd / "k.yaml").write_text(setup if isinstance(setup, str) else yaml.safe_dump(setup))
    r = cli("plan", *args)
    assert r.code == 2, (r.code, r.out, r.err)
    assert message in r.err
    assert r.err.strip().count("\n") == 0 and "Traceback" not in r.err
    assert not (cli.cwd / "plans").exists()


def test_kubeconfig_env_var_is_used_like_kubectl(cli):
    (cli.cwd / "k.yaml").write_text(yaml.safe_dump(kubeconfig()))
    r = cli("plan", env={"KUBECONFIG": str(cli.cwd / "k.yaml")})
    assert r.code == 2 and "https://127.0.0.1:1" in r.err
