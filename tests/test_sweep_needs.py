"""A paper experiment plans without hand-fed paths: files its runs read that nothing in the plan makes (the
official GHN-2 checkpoint of paper_imagenet) are listed with the plan, one line each, and --local/--submit
refuse until they are there (bench/running/needs.py)."""

from __future__ import annotations

import contextlib
import io

from bench import sweep as sweep_cli
from bench.planning.plan import plan_sweep

BLOB = "7b5d6733e9fdf0069bc6186cad3a0b1b54fda68d"  # docs/ghn.md section 1


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = sweep_cli.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def paper(tmp_path) -> list[str]:
    return ["experiment=paper_imagenet", "data.root=/data/imagenet", f"paths.runs={tmp_path / 'runs'}",
            f"paths.checkpoints={tmp_path / 'ckpt'}"]


def test_paper_imagenet_plans_without_a_checkpoint_argument_and_names_the_missing_file(tmp_path):
    plan = plan_sweep(paper(tmp_path))
    checkpoint = tmp_path / "ckpt" / "ghn2_imagenet.pt"
    ghn = [t for t in plan.runs if "init=ghn" in t.argv]
    assert len(ghn) == 2 * 3  # one per target (tf_efficientnet_b0, efficientnet_b0) and seed
    assert all(f"init.checkpoint={checkpoint}" in t.argv for t in ghn)
    assert not any("init.checkpoint" in a for t in plan.runs if "init=ghn" not in t.argv for a in t.argv)
    (line,) = plan.missing
    for part in (f"the ghn runs need {checkpoint}", "checkpoints/ghn2_imagenet.pt of github.com/facebookresearch/ppuda",
                 f"git hash-object {checkpoint}", BLOB, "init.checkpoint=<path>"):
        assert part in line
    assert "missing file: the ghn runs need" in plan.summary()


def test_the_plan_prints_and_local_and_submit_refuse_in_one_line(tmp_path):
    rc, out, err = cli(*paper(tmp_path))
    assert rc == 0 and "missing file: the ghn runs need" in out and "stage 2, runs:" in out and err == ""
    for mode in ("--local", "--submit"):
        rc, out, err = cli(*paper(tmp_path), mode)
        assert rc == 2, out + err
        assert err.count("\n") == 1 and err.startswith("error: missing file: the ghn runs need"), err
        assert not (tmp_path / "runs" / "paper_imagenet").exists()  # nothing written, nothing submitted


def test_nothing_is_missing_once_the_file_is_there_or_no_run_needs_it(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "ghn2_imagenet.pt").write_bytes(b"stand-in")
    assert plan_sweep(paper(tmp_path)).missing == []
    assert plan_sweep([*paper(tmp_path)[:1], "init=random,dpiat", *paper(tmp_path)[1:]]).missing == []
    elsewhere = tmp_path / "mine.pt"
    plan = plan_sweep([*paper(tmp_path)[:3], f"init.checkpoint={elsewhere}"])  # paths.checkpoints: the default
    (line,) = plan.missing
    assert line.startswith(f"the ghn runs need {elsewhere} (init.checkpoint), which does not exist")


def test_a_checkpoint_that_a_prerequisite_trains_is_not_missing(tmp_path):
    # experiment=proxy meta-trains its GHN in stage 1 (grid.prerequisites, out_dir=<...>/ghn)
    plan = plan_sweep(["experiment=proxy", "pair=tinynet_d_to_e", f"paths.runs={tmp_path}"])
    assert [t.kind for t in plan.prerequisites] == ["source", "prerequisite"]
    assert any("init=ghn" in t.argv for t in plan.runs) and plan.missing == []
