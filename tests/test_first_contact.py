"""The README's first screen says what its two commands take and print; those words are the measurement's.

bench/measure/first_contact.py times the commands in a fresh clone and commits what it measured
(results/first_contact/timing.json) and the default's three runs (results/first_contact/default/). The README and
docs/reproducing.md quote them; a remeasured time or a changed number fails here until the words follow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST = REPO / "results" / "first_contact"
PAGES = [REPO / "README.md", REPO / "docs" / "reproducing.md"]
ROWS = {"random": "random", "DPIAT": "dpiat", "GHN-2": "ghn"}


def timing() -> dict:
    return json.loads((FIRST / "timing.json").read_text())


def minutes_seconds(seconds: float) -> str:
    """How a page writes a measured time: '1 min 52 s' (whole seconds)."""
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def runs() -> dict[str, dict]:
    found = {}
    for record in FIRST.glob("default/*/*/seed0/run.json"):
        run = json.loads(record.read_text())
        found[run["init"]["name"] if isinstance(run.get("init"), dict) else run["init"]] = run
    return found


def expected_row(run: dict) -> tuple[str, str]:
    """(best top-1 / BN over the epochs, BN top-1 before training), as the first screen prints them."""
    best = max(m["val_top1"] for m in run["metrics"])
    best_bn = max(m["val_top1_bn"] for m in run["metrics"])
    return f"{best:.3f} / {best_bn:.3f}", f"{run['init_metrics']['val_top1_bn']:.3f}"


def measured() -> list[str]:
    """The commands timed: set-up and the default always; the test command once its own timing (made in a fresh
    clone of a commit that already holds the default's) has been committed."""
    return [n for n in ("setup", "default", "tests") if n in timing() or n != "tests"]


def test_the_measurement_is_whole():
    t = timing()
    for name in measured():
        assert t[name]["exit"] == 0, f"{name}: exit {t[name]['exit']}"
        assert t[name]["load_before"] and t[name]["cpu_model"] and t[name]["cpu_capability"]
    assert set(runs()) == {"random", "dpiat", "ghn"}
    for run in runs().values():
        assert run["status"] == "finished" and len(run["metrics"]) == run["epochs"]
        assert run["git_commit"] == t["default"]["git_commit"]  # the runs are the timed command's


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_pages_quote_the_measured_times(page):
    text = page.read_text()
    t = timing()
    for name in measured():
        assert f"**{minutes_seconds(t[name]['seconds'])}**" in text, \
            f"{page.name} does not quote the measured {name} time {minutes_seconds(t[name]['seconds'])}"
    idle = t["default"]["load_before"].split("/")[0]  # the machine's own load, before the command added its own
    assert t["default"]["cpu_capability"] in text and f"load {idle}" in text


def test_the_readme_table_is_the_committed_runs():
    text = (REPO / "README.md").read_text()
    head = text[:text.index("## Findings")]
    by_init = runs()
    for label, init in ROWS.items():
        row = re.search(rf"^\| {re.escape(label)} \| (.+?) \|$", head, re.M)
        assert row, f"README's first-screen table has no {label} row"
        best, before = expected_row(by_init[init])
        assert row.group(1).startswith(best), f"{label}: README says {row.group(1)!r}, the run {best}"
        if init == "dpiat":
            assert f"{before} before any training" in row.group(1)


def test_the_default_printed_what_the_table_says():
    """The committed log of the timed command printed the same best numbers (its table)."""
    log = (FIRST / "default.log").read_text()
    for init, run in runs().items():
        best, _ = expected_row(run)
        top1, bn = best.split(" / ")
        line = next(ln for ln in log.splitlines() if re.match(rf"^\| \S+ \| {init} \| 1 \|", ln))
        assert f"{top1} ± - / {bn} ± -" in line, line


def test_the_default_config_quotes_the_same_numbers():
    header = (REPO / "conf" / "experiment" / "default.yaml").read_text().split("defaults:")[0]
    header = " ".join(line.lstrip("# ") for line in header.splitlines())
    for init, run in runs().items():
        best, before = expected_row(run)
        assert f"{init} {best}" in header, f"conf/experiment/default.yaml does not say {init} {best}"
    assert f"({expected_row(runs()['dpiat'])[1]} before training, BN)" in header


def test_the_test_suite_settings_table_is_the_measurement():
    """docs/reproducing.md's table of test-suite settings quotes results/first_contact/test_settings.json."""
    text = (REPO / "docs" / "reproducing.md").read_text()
    measured = json.loads((FIRST / "test_settings.json").read_text())
    assert measured["runs"]
    for run in measured["runs"]:
        row = (f"| {run['setting']} | {minutes_seconds(run['pytest_seconds'])} | "
               f"{round(run['user_s'] + run['sys_s'])} s |")
        assert row in text, f"docs/reproducing.md lacks the measured row {row}"
