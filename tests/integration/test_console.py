"""What the commands print: their --help, a missing required value, a training run's console, and
fusion-demo-data writing only its cohort."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import TINY, run_module

#: command module -> its console script, which its help names
COMMANDS = {
    "train": "fusion-train",
    "cv": "fusion-cv",
    "predict": "fusion-predict",
    "validate": "fusion-validate",
    "robustness": "fusion-robustness",
    "demo_data": "fusion-demo-data",
    "extract_features": "fusion-extract-features",
    "explain": "fusion-explain",
    "similar": "fusion-similar",
}


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_help_describes_the_command_with_examples_not_the_config_dump(module):
    result = run_module(f"fusion.cli.{module}", "--help")
    assert result.returncode == 0, result.stderr
    command, out = COMMANDS[module], result.stdout
    assert out.startswith(f"{command}: "), out  # the description first
    assert "== Examples ==" in out and re.search(rf"^ +{command} \S+=", out, re.M), out
    assert "== Common overrides ==" in out
    # Hydra's default help: every config group, then the whole composed config
    assert "== Config ==" not in out and "_target_" not in out and "task_name" not in out
    assert len(out.splitlines()) < 45


def test_predict_help_lists_no_training_config_group():
    out = run_module("fusion.cli.predict", "--help").stdout
    assert "fuser" not in out and "modality:" not in out and "trainer:" not in out


def test_a_missing_required_value_is_one_line_naming_it_with_an_example():
    result = run_module("fusion.cli.predict", "data.manifest=cohort/manifest.csv")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ckpt_path is required")
    assert "fusion-predict ckpt_path=" in lines[0] and "fusion-predict --help" in lines[0]


def test_demo_data_without_out_stops_instead_of_writing_a_folder_named_question_marks(tmp_path):
    result = run_module("fusion.cli.demo_data", "n_patients=4", cwd=tmp_path)
    assert result.returncode == 1 and "error: out is required" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_data_writes_only_the_cohort_it_was_asked_for(tmp_path):
    args = ("out=cohort", "n_patients=6", "volume_shape=[8,8,8]", "tile_size=8", "n_genes=8")
    result = run_module("fusion.cli.demo_data", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]  # no outputs/, .hydra/ or demo_data.log
    assert (tmp_path / "cohort" / "manifest.csv").exists()


#: what every run printed before and no user acts on
NOISE = (
    "anonymous setting",  # W&B's deprecation of an argument Lightning passes
    "litlogger",  # Lightning's tip
    "LeafSpec",  # torch's _pytree deprecation, raised inside Lightning
    "GPU available",
    "TPU available",
    "Restoring states",
    "Loaded model weights",
    "Run history",  # W&B's end-of-run summary
    "Run summary",
    "Tracking run with wandb",
)


@pytest.fixture(scope="module")
def logged_run(tiny_cohort, tmp_path_factory):
    """A tiny fusion-train with W&B (offline, not silenced by the environment) whose stdout is a pipe, as
    under nohup or SLURM. TINY leaves out the progress bar config: Lightning then adds its own bar."""
    run_dir = tmp_path_factory.mktemp("run") / "train"
    overrides = [o for o in TINY if not o.startswith("logger=")]
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={tiny_cohort}",
        *overrides,
        "logger=[csv,wandb]",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_SILENT": "false"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result, run_dir


def test_a_run_into_a_log_file_prints_one_line_per_epoch_and_no_bar(logged_run):
    result, _ = logged_run
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"], result.stdout
    for line in lines:
        assert re.search(r"train_loss \S+  val_loss \S+  val_score \S+  total_loss \S+  \d+:\d\d:\d\d$", line)
    assert "it/s" not in result.stdout + result.stderr  # no progress bar redraws in the log


def test_a_run_prints_no_library_noise_and_ends_with_its_folder_and_test_metrics(logged_run):
    result, run_dir = logged_run
    console = result.stdout + result.stderr
    assert [noise for noise in NOISE if noise in console] == []
    assert f"outputs: {run_dir.resolve()}" in result.stdout
    assert re.search(r"^test: score \d\.\d{3}  ", result.stdout, re.M), result.stdout
    assert "wandb sync " + str(run_dir.resolve() / "wandb" / "offline-run-") in result.stdout
    assert '"test/survival_brier_q50"' not in console  # the whole metrics dict is in metrics.json only
