"""A robot without torch runs an ONNX export through the same executor as the eager policy.

The robot side is a subprocess of this interpreter in which ``import torch`` (and
``torchvision``) fails: a directory first on ``PYTHONPATH`` holds stand-in packages that
raise ImportError, exactly what a torch-free install sees. The parent process (which has
torch) builds, checkpoints and exports the policy and computes the eager reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from il_core.batch import to_torch
from il_core.checkpoint import load_policy, save_checkpoint
from il_core.execution import PolicyExecutor
from il_core.export import export_policy
from il_core.policies import make_policy
from tests.helpers import random_batch, vector_spec

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6

#: The modules a robot imports to run the inference node on an ONNX file (plus the data
#: writer's, which the recorder and DAgger nodes use); none may import torch at module level.
RUNTIME_MODULES = [
    "il_core",
    "il_core.runtime",
    "il_core.execution",
    "il_core.spec",
    "il_core.config",
    "il_core.mapping",
    "il_core.alignment",
    "il_core.data",
    "il_core.data._fs",
    "il_core.data.background",
    "il_core.data.codec",
    "il_core.data.episode",
    "il_core.data.errors",
    "il_core.data.format",
    "il_core.data.reader",
    "il_core.data.recovery",
    "il_core.data.writer",
]

# Run in the torch-free subprocess: argv = onnx file, observations (JSON), files that must
# fail to load. Prints one JSON line.
ROBOT_SCRIPT = """
import importlib, json, sys
import numpy as np
try:
    import torch  # noqa: F401
    blocked = False
except ImportError:
    blocked = True
for name in sys.argv[4].split(","):
    importlib.import_module(name)
from il_core.execution import PolicyExecutor
from il_core.runtime import ExportError, load_runtime_policy

policy = load_runtime_policy(sys.argv[1], num_threads=1, seed=0)
executor = PolicyExecutor(policy)
actions = [executor.step({"state": np.asarray(o, np.float32)}).tolist()
           for o in json.loads(sys.argv[2])]
errors = {}
for path in sys.argv[3].split(","):
    try:
        load_runtime_policy(path)
        errors[path] = None
    except ExportError as e:
        errors[path] = str(e)
print(json.dumps({
    "blocked": blocked,
    "torch_in_modules": "torch" in sys.modules,
    "name": policy.name,
    "inferences": executor.inference_count,
    "actions": actions,
    "errors": errors,
}))
"""


def _block_torch(root: Path) -> Path:
    """A directory whose ``torch`` and ``torchvision`` packages raise ImportError."""
    for name in ("torch", "torchvision"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed (blocked by the test)')\n"
        )
    return root


def _run(code: str, *args: str, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, pythonpath)))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A few-step-trained bc checkpoint, its ONNX and TorchScript exports, the blocker."""
    root = tmp_path_factory.mktemp("robot")
    spec = vector_spec()
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    cfg = {"hidden_dims": [32, 32], "n_obs_steps": 2, "horizon": 4, "n_action_steps": 2}
    policy = make_policy("bc", cfg, spec)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    for step in range(5):
        loss, _ = policy(to_torch(random_batch(spec, rng, b=16, k=2, h=4), torch.device("cpu")))
        opt.zero_grad()
        loss.backward()
        opt.step()
        policy.after_optimizer_step(step + 1)
    ckpt = save_checkpoint(root / "policy.pt", policy.eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy ONNX exporter says it is legacy
        onnx = export_policy(policy, root / "policy.onnx")
        ts = export_policy(policy, root / "policy_ts.pt")
    return {"ckpt": ckpt, "onnx": onnx, "ts": ts, "blocker": _block_torch(root / "blocker")}


def test_onnx_export_runs_without_torch_like_the_eager_policy(files):
    observations = np.random.default_rng(1).normal(size=(STEPS, 4)).round(4).tolist()
    proc = _run(
        ROBOT_SCRIPT,
        str(files["onnx"]),
        json.dumps(observations),
        f"{files['ckpt']},{files['ts']}",
        ",".join(RUNTIME_MODULES),
        pythonpath=[files["blocker"], ROOT],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked"] and not out["torch_in_modules"]
    assert out["name"] == "bc" and out["inferences"] == STEPS // 2

    eager = PolicyExecutor(load_policy(files["ckpt"]))
    want = [eager.step({"state": np.asarray(o, np.float32)}) for o in observations]
    np.testing.assert_allclose(np.array(out["actions"]), np.stack(want), atol=1e-5)

    # A training checkpoint and a TorchScript export need torch: say so, naming the file.
    for path in (files["ckpt"], files["ts"]):
        message = out["errors"][str(path)]
        assert message is not None and message.startswith(str(path))
        assert "needs torch" in message and ".onnx" in message


def test_runtime_modules_do_not_import_torch():
    # With torch installed: catches an import guarded by try/except too, which the blocked
    # subprocess above would not notice.
    code = (
        "import importlib, sys\n"
        f"for name in {RUNTIME_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    proc = _run(code, pythonpath=[ROOT])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]"
