"""The pyramid's parts on their own: the contract's errors, the isolation scan, the compact
termination message, and the `proctor pyramid run` command."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from torch import nn

from proctor.api.v1alpha1 import CheckResult, CheckVerdict, LayerName, LayerPhase, LayerResult
from proctor.pyramid import isolation
from proctor.pyramid.contract import ContractError, build_setup, load_setup_function
from proctor.pyramid.runner import TERMINATION_MESSAGE_LIMIT, termination_message
from tests.support.crd_schema import REPO
from tests.support.tools import tool

HERE = Path(__file__).parent


def _minimal(**extra):
    model = nn.Linear(2, 1)
    return {
        "model": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "train_data": [(torch.zeros(4, 2), torch.zeros(4, 1))],
        "loss_fn": lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
        **extra,
    }


def test_the_contract_names_what_is_missing():
    parts = _minimal()
    del parts["loss_fn"]
    with pytest.raises(ContractError, match="returned no loss_fn"):
        build_setup(lambda config: parts, {})


def test_the_contract_catches_a_misspelt_key():
    with pytest.raises(ContractError, match=r"unknown keys \['eval_fun'\]"):
        build_setup(lambda config: _minimal(eval_fun=None), {})


def test_the_contract_checks_types():
    with pytest.raises(ContractError, match=r"must be a torch\.nn\.Module"):
        build_setup(lambda config: {**_minimal(), "model": "not a model"}, {})


def test_entrypoints_that_cannot_load_say_why():
    with pytest.raises(ContractError, match=r"write it as package\.module:setup"):
        load_setup_function("no_colon_here")
    with pytest.raises(ContractError, match="--path"):
        load_setup_function("surely_not_a_module_anywhere:setup")


def test_default_save_and_load_round_trip(tmp_path):
    setup = build_setup(lambda config: _minimal(), {})
    setup.save(tmp_path)
    other = build_setup(lambda config: _minimal(), {})
    with torch.no_grad():
        other.model.weight.zero_()
    other.load(tmp_path)
    assert torch.equal(other.model.weight, setup.model.weight)


def test_isolation_scan_finds_test_imports_in_core_code_only(tmp_path):
    package = tmp_path / "pkg"
    (package / "tests").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("import torch\nfrom . import layers\n")
    (package / "layers.py").write_text("import pytest\n")
    (package / "train.py").write_text("from pkg.tests.fixtures import data\n")
    (package / "tests" / "test_model.py").write_text("import pytest\nfrom pkg import model\n")
    files = sorted(package.rglob("*.py"))
    found = sorted(f"{v.module.name}:{v.imported}" for v in isolation.scan(tmp_path, files))
    assert found == ["layers.py:pytest", "train.py:pkg.tests.fixtures"]


def test_the_termination_message_fits_4_kib_by_shortening_messages_not_dropping_checks():
    checks = [
        CheckResult(
            name=f"check_{i}", verdict=CheckVerdict.FAILED, value=float(i), message="x" * 2000
        )
        for i in range(20)
    ]
    result = LayerResult(
        layer=LayerName.L1,
        phase=LayerPhase.FAILED,
        checks=checks,
        start_time=datetime.now(UTC),
        message="y" * 3000,
    )
    text = termination_message(result)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = LayerResult.model_validate(json.loads(text))
    assert [c.name for c in parsed.checks] == [c.name for c in checks]


def _pyramid(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("proctor"), "pyramid", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_command_prints_a_table_and_passes_the_digits_example(tmp_path):
    result = _pyramid(
        "--manifest",
        "examples/digits/pyramid.yaml",
        "--path",
        "examples/digits",
        "--report-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for layer in ("L0  PASSED", "L1  PASSED", "L2  PASSED", "L3  PASSED"):
        assert layer in result.stdout
    assert "the pyramid passed" in result.stdout
    report = json.loads((tmp_path / "pyramid-report.json").read_text())
    assert (
        report["layers"][2]["details"]["curve"]["curve"][0]
        > report["layers"][2]["details"]["curve"]["final_loss"]
    )


@pytest.mark.slow
def test_one_layer_as_a_job_runs_it_writes_the_termination_message_and_fails_with_code_1(tmp_path):
    log = tmp_path / "termination-log"
    result = _pyramid(
        "--entrypoint",
        "dying_relu:setup",
        "--path",
        str(HERE / "planted"),
        "--layer",
        "L1",
        "--termination-log",
        str(log),
        "--output",
        "json",
    )
    assert result.returncode == 1
    [layer] = json.loads(result.stdout)
    assert layer["layer"] == "L1"
    assert layer["phase"] == "Failed"
    written = LayerResult.model_validate_json(log.read_text())
    assert any(c.name == "dead_activations" and c.verdict == "Failed" for c in written.checks)


def test_bad_input_is_a_usage_error_with_a_reason():
    missing = _pyramid()
    assert missing.returncode == 2
    assert "--entrypoint" in missing.stderr
    unknown = _pyramid("--entrypoint", "nowhere_to_be_found:setup")
    assert unknown.returncode == 2
    assert "cannot import" in unknown.stderr


class _TinyAttention(nn.Module):
    """Tokens -> embedding -> self-attention -> mean -> class, enough to exercise L1's hooks."""

    def __init__(self, sharpen: float = 1.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(32, 16)
        self.attend = nn.MultiheadAttention(16, 1, batch_first=True)
        self.head = nn.Linear(16, 4)
        with torch.no_grad():
            self.attend.in_proj_weight[:32].mul_(sharpen)  # queries and keys only

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        attended, _ = self.attend(x, x, x)
        return self.head(attended.mean(1))


def _attention_setup(sharpen: float = 1.0, lr: float = 1e-3):
    torch.manual_seed(0)
    tokens = torch.stack([torch.randperm(32)[:12] for _ in range(64)])  # distinct per sequence
    labels = tokens[:, 0] % 4
    model = _TinyAttention(sharpen)
    return build_setup(
        lambda config: {
            "model": model,
            "optimizer": torch.optim.Adam(model.parameters(), lr=lr),
            "train_data": [(tokens[i : i + 16], labels[i : i + 16]) for i in range(0, 64, 16)],
            "loss_fn": lambda m, b: nn.functional.cross_entropy(m(b[0]), b[1]),
        },
        {},
    )


def _l1(setup) -> dict[str, CheckResult]:
    from proctor.api.v1alpha1.pyramid import HealthSettings
    from proctor.pyramid import health

    return {c.name: c for c in health.run(setup, HealthSettings(), torch.device("cpu"))}


def test_attention_and_embeddings_are_observed_and_healthy_ones_pass():
    checks = _l1(_attention_setup())
    assert checks["attention_entropy"].verdict == CheckVerdict.PASSED
    assert checks["embedding_norm_drift"].verdict == CheckVerdict.PASSED


def test_collapsed_attention_is_caught():
    checks = _l1(_attention_setup(sharpen=200.0))
    assert checks["attention_entropy"].verdict == CheckVerdict.FAILED
    assert "collapsed" in checks["attention_entropy"].message


def test_embedding_norms_that_run_away_are_caught():
    checks = _l1(_attention_setup(lr=5.0))
    assert checks["embedding_norm_drift"].verdict == CheckVerdict.FAILED


def test_an_entrypoint_may_name_a_file():
    function = load_setup_function(str(REPO / "examples/digits/digits_mlp.py") + ":setup")
    assert function.__name__ == "setup"


def test_a_plain_list_of_registered_layers_is_no_false_alarm():
    class Looped(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(2, 4), nn.Linear(4, 1)
            self.in_order = [self.fc1, self.fc2]  # registered above; the list is for looping

        def forward(self, x):
            for layer in self.in_order:
                x = layer(x)
            return x

    model = Looped()
    setup = build_setup(
        lambda config: {
            **_minimal(),
            "model": model,
            "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        },
        {},
    )
    assert _l1(setup)["parameters_registered"].verdict == CheckVerdict.PASSED


def test_isolation_does_not_confuse_library_modules_with_test_modules(tmp_path):
    package = tmp_path / "pkg"
    (package / "tests").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tests" / "data.py").write_text("")
    (package / "loader.py").write_text("from torch.utils import data\nimport unittest.mock\n")
    found = [v.imported for v in isolation.scan(tmp_path, sorted(package.rglob("*.py")))]
    assert found == ["unittest.mock"]


def test_predict_that_switches_batchnorm_to_training_mode_is_caught(tmp_path):
    from proctor.api.v1alpha1.pyramid import EndToEndSettings
    from proctor.pyramid import endtoend

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
        data = [(torch.randn(16, 2), torch.randn(16, 1)) for _ in range(4)]

        def predict(m, batch):
            m.train()  # the bug
            return m(batch[0])

        return build_setup(
            lambda config: {
                "model": model,
                "optimizer": torch.optim.SGD(model.parameters(), lr=0.01),
                "train_data": data,
                "loss_fn": lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
                "predict_fn": predict,
            },
            {},
        )

    checks = {c.name: c for c in endtoend.run(make, EndToEndSettings(), torch.device("cpu"))}
    assert checks["predictions_deterministic"].verdict == CheckVerdict.FAILED
    assert "switches modules back to training mode" in checks["predictions_deterministic"].message
