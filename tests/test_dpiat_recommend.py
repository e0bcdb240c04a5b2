"""dpiat.recommend and its cache, on a tiny fake zoo (timm's test_* models), and the --plot pictures.

The real zoo (every pretrained timm architecture) is timed in bench/measure/recommend_speed.py, not here.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import subprocess
import sys

import pytest
import timm
import torch

import dpiat
from dpiat import recommender as rec_mod
from dpiat import shapes
from dpiat.cli import main
from dpiat.errors import DpiatError, UnknownNameError

ZOO = ["test_efficientnet", "test_resnet", "test_byobnet", "test_convnext", "test_vit", "test_nfnet"]
TARGET = "test_efficientnet_gn"


def _fake_tags():
    tags = {a: [{"tag": "r160_in1k", "input_size": [3, 160, 160]}] for a in ZOO}
    tags["test_resnet"].append({"tag": "fake_in22k", "input_size": [3, 224, 224]})
    return tags


@pytest.fixture
def zoo(monkeypatch, tmp_path):
    """The candidate list is a few small timm models (timm's test_* nets, not left out here), the cache a
    fresh folder, no shipped index (timm's test_* models have pretrained tags, so the real one holds them).
    The method is the faithful one unless a test asks for another."""
    monkeypatch.setattr(rec_mod, "pretrained_tags", _fake_tags)
    monkeypatch.setattr(rec_mod, "TEST_NETS", "no_such_net")  # the fake zoo is made of timm's test_* nets
    monkeypatch.setattr(shapes, "needs_own_structure", lambda *a, **k: False)  # auto: dpiat (its GroupNorm aside)
    monkeypatch.setenv("DPIAT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DPIAT_SHIPPED_INDEX", "0")
    return tmp_path / "cache"


def _ranking(r):
    return [(c.name, c.score, c.similarity, c.overwritten, c.params) for c in r.candidates]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("DPIAT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rec_mod.cache_dir() == tmp_path / "xdg" / "dpiat"
    monkeypatch.setenv("DPIAT_CACHE_DIR", str(tmp_path / "own"))
    assert rec_mod.cache_dir() == tmp_path / "own"
    monkeypatch.delenv("DPIAT_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert rec_mod.cache_dir() == tmp_path / "home" / ".cache" / "dpiat"


def test_first_call_builds_second_reads_the_cache(zoo):
    first = dpiat.recommend(TARGET, workers=1)
    assert first.built == len(ZOO) and not first.skipped and not first.notes
    store = rec_mod.store_dir("dpiat")
    assert str(store).startswith(str(zoo)) and f"timm-{timm.__version__}" in str(store)
    assert sorted(p.stem for p in store.glob("*.json")) == sorted(ZOO)
    second = dpiat.recommend(TARGET, workers=1)
    assert second.built == 0 and _ranking(second) == _ranking(first)
    # a new target reuses the structures (nothing built), and scores them afresh
    third = dpiat.recommend("test_resnet", workers=1)
    assert third.built == 0 and third.candidates[0].name == "test_resnet"
    # another head is another target: its own results, not the 1000-class ones
    ten = dpiat.recommend(TARGET, workers=1, num_classes=10)
    assert ten.built == 0 and {c.name: c.overwritten for c in ten.candidates} != {
        c.name: c.overwritten for c in first.candidates}
    assert len(list((rec_mod.pairs_dir() / "dpiat").glob("*.json"))) == 3  # and auto's choice per target
    assert len(list((rec_mod.pairs_dir() / "auto").glob("*.json"))) == 3


def test_scores_equal_the_library_and_a_real_transfer(zoo):
    r = dpiat.recommend(TARGET, workers=1, num_classes=10)
    assert [c.score for c in r.candidates] == sorted((c.score for c in r.candidates), reverse=True)
    for c in r.candidates:
        assert c.score == c.similarity
        dst = dpiat.create_model(TARGET, num_classes=10, device="meta")
        assert c.similarity == pytest.approx(dpiat.similarity(c.name, dst), abs=1e-12)
    for c in r.candidates[:3]:  # overwritten is what the transfer itself reports
        src, dst = timm.create_model(c.name), timm.create_model(TARGET, num_classes=10)
        assert c.overwritten == pytest.approx(dpiat.transfer(src, dst).fraction_overwritten, abs=1e-12)
        assert c.params == sum(p.numel() for p in src.parameters())
    by_overwritten = dpiat.recommend(TARGET, workers=1, num_classes=10, score="overwritten")
    assert [c.score for c in by_overwritten.candidates] == [c.overwritten for c in by_overwritten.candidates]
    assert [c.overwritten for c in by_overwritten.candidates] == sorted(
        (c.overwritten for c in by_overwritten.candidates), reverse=True)


def test_worker_processes_give_the_same_ranking(zoo, tmp_path, monkeypatch):
    one = dpiat.recommend(TARGET, workers=1)
    monkeypatch.setenv("DPIAT_CACHE_DIR", str(tmp_path / "other"))
    two = dpiat.recommend(TARGET, workers=2)  # 6 candidates >= 2 x 2 workers: a forked pool
    assert two.built == len(ZOO) and _ranking(two) == _ranking(one)


def _fill(queue, barrier, cache):
    import os

    os.environ["DPIAT_CACHE_DIR"] = cache
    rec_mod.pretrained_tags = _fake_tags
    barrier.wait()
    r = dpiat.recommend(TARGET, workers=1)
    queue.put((_ranking(r), r.built, r.notes))


def test_two_processes_filling_the_cache_at_once(zoo):
    ctx = multiprocessing.get_context("fork")
    queue, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_fill, args=(queue, barrier, str(zoo))) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results[0][0] == results[1][0] and not results[0][2] and not results[1][2]
    store = rec_mod.store_dir("dpiat")
    assert not list(store.glob(".*.tmp")), "temporary files left behind"
    for path in store.glob("*.json"):
        json.loads(path.read_text())  # every entry whole
    again = dpiat.recommend(TARGET, workers=1)
    assert again.built == 0 and _ranking(again) == results[0][0]


@pytest.mark.parametrize("garbage", ['{"format": 1, "tree": [0', '{"format": 1, "tree": [[7]], "leaves": []}'])
def test_a_corrupt_entry_is_rebuilt_with_a_note(zoo, garbage):
    first = dpiat.recommend(TARGET, workers=1)
    store = rec_mod.store_dir("dpiat")
    (store / "test_resnet.json").write_text(garbage)
    for memo in rec_mod.pairs_dir().rglob("*.json"):
        memo.unlink()  # the pair results too, so the structure is read again
    second = dpiat.recommend(TARGET, workers=1)
    assert second.built == 1 and _ranking(second) == _ranking(first)
    assert len(second.notes) == 1 and "corrupt cache entry" in second.notes[0] and "test_resnet" in second.notes[0]
    assert "\n" not in second.notes[0]
    third = dpiat.recommend(TARGET, workers=1)
    assert third.built == 0 and not third.notes


def test_a_model_that_cannot_be_built_is_skipped_with_its_reason(zoo, monkeypatch):
    real = dpiat.models.create_model

    def broken(name, **kw):
        if name == "test_vit":
            raise RuntimeError("needs an argument this build does not give\nsecond line")
        return real(name, **kw)

    monkeypatch.setattr(dpiat.models, "create_model", broken)
    r = dpiat.recommend(TARGET, workers=1)
    assert [n for n, _ in r.skipped] == ["test_vit"]
    reason = r.skipped[0][1]
    assert "RuntimeError: needs an argument" in reason and "second line" not in reason
    assert "test_vit" not in [c.name for c in r.candidates] and len(r.candidates) == len(ZOO) - 1
    monkeypatch.setattr(dpiat.models, "create_model", real)
    assert [n for n, _ in dpiat.recommend("test_resnet", workers=1).skipped] == ["test_vit"]  # cached as skipped


def test_filters(zoo):
    names = lambda r: sorted(c.name for c in r.candidates)  # noqa: E731
    assert names(dpiat.recommend(TARGET, name="*res*", workers=1)) == ["test_resnet"]
    assert names(dpiat.recommend(TARGET, name=["*res*", "*vit"], workers=1)) == ["test_resnet", "test_vit"]
    tagged = dpiat.recommend(TARGET, tags="*in22k*", workers=1)
    assert names(tagged) == ["test_resnet"] and [t["tag"] for t in tagged.candidates[0].tags] == ["fake_in22k"]
    assert "test_vit" not in names(dpiat.recommend(TARGET, exclude_families="vision_transformer", workers=1))
    assert "test_resnet" not in names(dpiat.recommend(TARGET, exclude_families=["res*"], workers=1))
    everything = dpiat.recommend(TARGET, workers=1)
    limit = sorted(c.params for c in everything.candidates)[2]
    small = dpiat.recommend(TARGET, max_params=limit, workers=1)
    assert names(small) == sorted(c.name for c in everything.candidates if c.params <= limit) and len(names(small)) == 3
    assert [c.name for c in dpiat.recommend(TARGET, top=2, workers=1).candidates] == [
        c.name for c in everything.candidates[:2]]
    assert names(dpiat.recommend(TARGET, candidates=["test_resnet", "resnet18"], workers=1)) == [
        "resnet18", "test_resnet"]


def test_bad_input_is_one_clear_error(zoo):
    with pytest.raises(UnknownNameError, match="Did you mean: vision_transformer"):
        dpiat.recommend(TARGET, exclude_families="vision_transformr")
    with pytest.raises(UnknownNameError, match="pretrained tag pattern"):
        dpiat.recommend(TARGET, tags="*in99k*")
    with pytest.raises(UnknownNameError, match="Did you mean: overwritten"):
        dpiat.recommend(TARGET, score="overwriten")
    with pytest.raises(DpiatError, match="no candidate passes"):
        dpiat.recommend(TARGET, name="nothing*")
    with pytest.raises(DpiatError, match="top must be"):
        dpiat.recommend(TARGET, top=0)


def test_cli_json_keys_order_and_table(zoo, capsys):
    assert main(["recommend", TARGET, "--json", "--workers", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == len(ZOO)
    assert all(list(c) == ["name", "score", "similarity", "overwritten", "params", "method", "tags"] for c in out)
    assert [c["score"] for c in out] == sorted((c["score"] for c in out), reverse=True)
    assert out[0]["tags"][0] == {"tag": "r160_in1k", "input_size": [3, 160, 160]}
    assert main(["recommend", TARGET, "--top", "2", "--workers", "1", "--score", "overwritten"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "best first by overwritten" in table[0] and len(table) == 4 and "r160_in1k@160" in table[2]


@pytest.mark.parametrize("argv, message", [
    (["recommend", "test_efficientnet_gm"], "Did you mean: test_efficientnet_gn"),
    (["recommend", TARGET, "--candidates", "test_resnett"], "Did you mean: test_resnet"),
    (["recommend", TARGET, "--exclude-family", "convnxt"], "Did you mean: convnext"),
    (["explain", "test_resnet", TARGET, "--plot", "matching.pdf"], "writes .png or .svg"),
])
def test_cli_errors_are_one_line(zoo, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_cli_bad_parameter_count(capsys):
    assert main(["recommend", TARGET, "--max-params", "lots"]) == 2
    err = capsys.readouterr().err
    assert "not a parameter count: 'lots'" in err and err.count("\n") == 1


def test_plots_are_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png, svg = tmp_path / "m.png", tmp_path / "s.svg"
    assert main(["explain", "test_resnet", TARGET, "--plot", str(png)]) == 0
    assert main(["similarity", "test_resnet", TARGET, "test_vit", "--plot", str(svg)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_plot_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["similarity", "test_resnet", TARGET, "--plot", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install" in err and "matplotlib" in err and "\n" not in err
    assert not (tmp_path / "s.png").exists()


def test_encode_decode_keeps_what_the_alignment_reads():
    model = dpiat.create_model("test_efficientnet", device="meta")
    blocks = dpiat.standardize(model)
    back = shapes.decode(json.loads(json.dumps(shapes.encode(blocks, 1))))
    assert back.sig == blocks.sig
    assert [leaf.shape for leaf in back.layers()] == [leaf.shape for leaf in blocks.layers()]
    assert torch.Size(next(iter(back.layers())).tensor_shapes[0]) == model.conv_stem.weight.shape


def _index_file(path, version, kind, archs):
    entries = {}
    for a in archs:
        entries[a] = shapes.build_entry(a, "dpiat")
    with gzip.open(path, "wt") as f:
        json.dump({"version": version, "kind": kind, "entries": entries}, f)


def test_the_shipped_index_is_read_instead_of_building(zoo, tmp_path, monkeypatch):
    built = dpiat.recommend(TARGET, workers=1)  # everything built, in the zoo's cache
    version, kind = rec_mod.structure_version("dpiat")
    index = tmp_path / "index.json.gz"
    _index_file(index, version, kind, ZOO[:4])
    monkeypatch.setitem(rec_mod.SHIPPED_INDEXES, "dpiat", index)
    monkeypatch.setattr(rec_mod, "_SHIPPED", {})
    monkeypatch.setenv("DPIAT_SHIPPED_INDEX", "1")
    monkeypatch.setenv("DPIAT_CACHE_DIR", str(tmp_path / "fresh"))
    first = dpiat.recommend(TARGET, workers=1)
    assert (first.shipped, first.built) == (4, len(ZOO) - 4) and _ranking(first) == _ranking(built)
    assert "4 from the shipped index" in first.table().splitlines()[0]
    again = dpiat.recommend("test_resnet", workers=1)  # the shipped entries were written to the cache
    assert (again.shipped, again.built) == (0, 0)
    # an index made for another timm or another standardization code is never read
    monkeypatch.setattr(rec_mod, "_SHIPPED", {})
    _index_file(index, version.replace("_code-", "_code-0"), kind, ZOO)
    monkeypatch.setenv("DPIAT_CACHE_DIR", str(tmp_path / "fresh2"))
    other = dpiat.recommend(TARGET, workers=1)
    assert (other.shipped, other.built) == (0, len(ZOO)) and _ranking(other) == _ranking(built)


@pytest.mark.parametrize("method", ["dpiat", "dpiat_struct"])
def test_the_committed_index_is_current_and_equals_fresh_builds(method):
    """dpiat/data/structures_<kind>.json.gz: made for the pinned timm and this standardization code, every
    pretrained architecture in it, and its entries what a build gives now (a sample of them)."""
    with gzip.open(rec_mod.SHIPPED_INDEXES[method], "rt") as f:
        data = json.load(f)
    version, kind = rec_mod.structure_version(method)
    assert (data["version"], data["kind"]) == (version, kind), (
        f"the shipped {method} structure index is stale: run .venv/bin/python bench/structure_index.py "
        f"--method {method} and commit it")
    entries = data["entries"]
    assert set(entries) == set(rec_mod.pretrained_tags()) and len(entries) > 1000
    names = sorted(entries)
    sample = {"tf_efficientnet_b0", "resnet50", "vit_small_patch16_224", "deit_tiny_patch16_224",
              "convnext_atto", "swin_tiny_patch4_window7_224", *names[::250]}
    for arch in sorted(sample):
        fresh = shapes.build_entry(arch, method)
        assert json.loads(json.dumps(fresh)) == entries[arch], arch


def test_a_cached_recommend_imports_neither_torch_nor_timm(zoo):
    first = dpiat.recommend(TARGET, workers=1)
    code = ("import json, sys; from dpiat.cli import main; code = main(['recommend', %r, '--json', '--include-test-nets']); "
            "print(json.dumps([code, 'torch' in sys.modules, 'timm' in sys.modules]))" % TARGET)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DPIAT_CACHE_DIR": str(zoo)},
                         capture_output=True, text=True, check=True).stdout
    listed, status = out[:out.rindex("\n[")], json.loads(out[out.rindex("\n[") + 1:])
    assert status == [0, False, False], status
    assert [c["name"] for c in json.loads(listed)] == [c.name for c in first.candidates]
    assert [c["similarity"] for c in json.loads(listed)] == [c.similarity for c in first.candidates]


def test_auto_picks_dpiat_struct_for_a_target_with_what_only_it_transfers(zoo, monkeypatch, capsys):
    monkeypatch.undo()  # the real needs_own_structure and test_* filter; the fixture's zoo again below
    monkeypatch.setattr(rec_mod, "pretrained_tags", _fake_tags)
    monkeypatch.setattr(rec_mod, "TEST_NETS", "no_such_net")
    monkeypatch.setenv("DPIAT_CACHE_DIR", str(zoo))
    monkeypatch.setenv("DPIAT_SHIPPED_INDEX", "0")
    assert shapes.needs_own_structure("test_vit") and not shapes.needs_own_structure("test_resnet")
    vit = dpiat.recommend("test_vit", workers=1)
    assert (vit.method, vit.asked) == ("dpiat_struct", "auto") and "chosen by auto" in vit.table().splitlines()[0]
    assert {c.method for c in vit.candidates} == {"dpiat_struct"}
    explicit = dpiat.recommend("test_vit", workers=1, method="dpiat_struct")
    assert _ranking(explicit) == _ranking(vit)
    for c in vit.candidates:  # what dpiat_struct's similarity says, not the faithful one's
        assert c.similarity == pytest.approx(dpiat.similarity(c.name, "test_vit", method="dpiat_struct"), abs=1e-9)
    faithful = dpiat.recommend("test_vit", workers=1, method="dpiat")
    assert {c.name: c.similarity for c in faithful.candidates} != {c.name: c.similarity for c in vit.candidates}
    cnn = dpiat.recommend("test_resnet", workers=1)
    assert cnn.method == "dpiat" and {c.method for c in cnn.candidates} == {"dpiat"}
    assert main(["recommend", "test_vit", "--json", "--workers", "1"]) == 0  # the choice read back from the cache
    assert {c["method"] for c in json.loads(capsys.readouterr().out)} == {"dpiat_struct"}


def test_timm_smoke_test_nets_are_left_out_unless_asked(zoo, monkeypatch):
    monkeypatch.setattr(rec_mod, "TEST_NETS", "test_*")
    monkeypatch.setattr(rec_mod, "pretrained_tags", lambda: {**_fake_tags(), "resnet10t": [{"tag": "c3_in1k",
                                                                                          "input_size": [3, 176, 176]}]})
    assert [c.name for c in dpiat.recommend(TARGET, workers=1).candidates] == ["resnet10t"]
    assert len(dpiat.recommend(TARGET, workers=1, include_test_nets=True).candidates) == len(ZOO) + 1
    named = dpiat.recommend(TARGET, workers=1, candidates=["test_resnet", "resnet10t"])  # named: ranked
    assert sorted(c.name for c in named.candidates) == ["resnet10t", "test_resnet"]


def test_a_recommendation_prints_as_its_table(zoo):
    rec = dpiat.recommend(TARGET, workers=1, top=3)
    assert str(rec) == rec.table() and rec.table().splitlines()[0].startswith(f"sources for {TARGET}")
    assert len(rec.table().splitlines()) == 2 + 3
