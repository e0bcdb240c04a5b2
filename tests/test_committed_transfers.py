"""Every committed run's transfer is what the code gives now: for each distinct (init, pair, classes, channels)
among the run.json files under results/*/runs/, the source and target are built as the harness builds them
(random weights: the matching and the amount written depend on shapes only), initialised by the run's method,
and the matched layer pairs, the number of elements written and the number of persistent buffers carried
(``details["buffers_carried"]``; a run recorded before ``dpiat_struct`` carried buffers carried none) must equal
what the run recorded.

A change to standardization, matching, the copy rules or a variant that alters a committed transfer fails here,
so committed tables cannot silently stop being what a rerun gives: run the affected runs again (and commit
them) or keep the old behaviour under a new method name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def committed_transfers() -> dict[str, list[tuple[str, dict]]]:
    groups: dict[str, list[tuple[str, dict]]] = {}
    for path in sorted(REPO.glob("results/*/runs/**/run.json")):
        run = json.loads(path.read_text())
        report = run.get("init_report") or {}
        if run.get("status") != "finished" or "elements_overwritten" not in report:
            continue  # sources, random and GHN-2 inits: no transfer
        cfg = run["config"]
        key = json.dumps([cfg["init"], cfg["pair"], cfg["data"]["num_classes"], cfg["data"]["in_chans"],
                          cfg["source"].get("num_classes"), cfg["source"].get("in_chans")], sort_keys=True)
        groups.setdefault(key, []).append((str(path.relative_to(REPO)), run))
    return groups


GROUPS = committed_transfers()


def _id(key: str) -> str:
    init, pair, *_ = json.loads(key)
    return f"{init['name']}:{pair['name']}"


def test_there_are_committed_transfers_to_check():
    methods = {json.loads(k)[0]["name"] for k in GROUPS}
    assert len(GROUPS) >= 40 and {"dpiat", "dpiat_struct", "dpiat_wsel", "dpiat_bn"} <= methods


@pytest.mark.parametrize("key", list(GROUPS), ids=[_id(k) for k in GROUPS])
def test_a_committed_transfer_is_what_the_code_gives_now(key):
    from omegaconf import OmegaConf

    import dpiat
    from bench.config import init_options
    from bench.running import sources
    from bench.running.harness import fresh_model

    runs = GROUPS[key]
    path, run = runs[0]
    recorded = run["init_report"]
    for other_path, other in runs[1:]:  # the seeds of one transfer recorded the same matching
        assert (other["init_report"]["pairs"], other["init_report"]["elements_overwritten"]) == \
            (recorded["pairs"], recorded["elements_overwritten"]), f"{other_path} differs from {path}"
    cfg = OmegaConf.create(run["config"])
    target = fresh_model(cfg.pair.target, cfg, cfg.seed)
    report = dpiat.initialize(cfg.init.name, target, source=sources.build_source_model(cfg),
                              **init_options(cfg.init))
    assert report["pairs"] == recorded["pairs"], f"{path}: the matched layers changed"
    assert report["elements_overwritten"] == recorded["elements_overwritten"], (
        f"{path}: {report['elements_overwritten']} elements written now, {recorded['elements_overwritten']} "
        "when it ran")
    carried, then = report["details"].get("buffers_carried", 0), recorded.get("details", {}).get("buffers_carried", 0)
    assert carried == then, (f"{path}: the transfer now carries {carried} persistent buffers (BatchNorm running "
                             f"statistics, ...), {then} when it ran: run it again or keep the old behaviour under "
                             "a method name of its own")
