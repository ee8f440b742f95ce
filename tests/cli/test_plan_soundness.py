"""A plan file edited by hand and summed again is not trusted: apply refuses an unsound plan
(exit 2) before any write."""

from __future__ import annotations

import yaml

from migrate.plan import checksum


def edit(path, change) -> None:
    """Edit the plan file, then sum it again, as an operator bent on applying it would."""
    record = yaml.safe_load(path.read_text())
    change(record)
    body = {k: v for k, v in record.items() if k not in ("apiVersion", "kind", "metadata")}
    digest = checksum(body)
    record["metadata"] = {"id": digest.split(":", 1)[1][:12], "checksum": digest}
    path.write_text(yaml.safe_dump(record, sort_keys=False))


def test_a_node_dropped_from_the_waves_is_exit_2_in_one_line_and_nothing_written(cli):
    cli("sim", "create", "c1")
    cli("plan", "--sim", "c1", "--force", "--delete-emptydir-data", "-o", "p.yaml")
    path = cli.cwd / "p.yaml"

    def drop_worker_3(record):
        record["waves"] = [w for w in record["waves"] if w["nodes"][0]["name"] != "worker-3"]
        for index, wave in enumerate(record["waves"], 1):
            wave["index"] = index

    edit(path, drop_worker_3)
    before = cli.world("c1")
    r = cli("apply", "p.yaml", "--yes")
    assert r.code == 2, r
    assert r.err.strip().count("\n") == 0, r.err
    assert "Traceback" not in r.err
    assert "node worker-3 is in the cluster snapshot but in no wave and not excluded" in r.err
    assert cli.world("c1")["actions"] == before["actions"]
