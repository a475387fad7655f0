"""Bad input is refused at the command line before anything is written: a bad override or a bad
CSV file gets a one-paragraph message naming the key or file (and the column or row) and what is
allowed, exit code 2 (1 for Hydra's own parse errors), no traceback, and no run directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONF, make_cfg, run_script
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from gradlab.checks.config import ConfigError, check, check_arguments
from gradlab.lessons.csvfile import DataError, read_csv
from gradlab.run import cli

# (overrides, exit code, phrases the message must contain). Checked before torch is imported,
# except those marked "imports": they need the classes (a `+key` no constructor takes) or the data.
CONFIG_CASES = {
    "lr_negative": (["optimizer.lr=-1"], 2, ["optimizer.lr=-1", "a number > 0"]),
    "unread top-level key": (["+sead=3"], 2, ["bad config key sead", "would be ignored", "seed, predict_x"]),
    "lr_zero": (["optimizer.lr=0"], 2, ["optimizer.lr=0", "a number > 0"]),
    "lr_not_a_number": (["optimizer.lr=fast"], 2, ["optimizer.lr='fast'", "a number > 0"]),
    "epochs_zero": (["trainer.max_epochs=0"], 2, ["trainer.max_epochs=0", "an integer >= 1"]),
    "epochs_text": (["trainer.max_epochs=abc"], 2, ["trainer.max_epochs='abc'", "an integer >= 1"]),
    "epochs_fraction": (["trainer.max_epochs=5.5"], 2, ["trainer.max_epochs=5.5", "an integer >= 1"]),
    "n_samples_one": (["data.n_samples=1"], 2, ["data.n_samples=1", "an integer >= 2"]),
    "n_features_zero": (["data.n_features=0"], 2, ["data.n_features=0", "an integer >= 1"]),
    "noise_negative": (["data.noise=-3"], 2, ["data.noise=-3", "a number >= 0"]),
    "batch_size_one": (["data.batch_size=1"], 2, ["data.batch_size=1", "null (full batch) or an integer >= 2"]),
    "val_fraction_above_one": (["data.val_fraction=1.5"], 2, ["data.val_fraction=1.5", "0 <= value < 1"]),
    "fractions_leave_no_training_data": (
        ["data.val_fraction=0.5", "data.test_fraction=0.5"], 2, ["add up to 1.0", "less than 1"],
    ),
    "unknown_optimization": (
        ["model.optimization=magic"], 2, ["model.optimization='magic'", "'analytic', 'automatic' or 'manual'"],
    ),
    "unknown_init": (["model.init=ones"], 2, ["model.init='ones'", "'default' or 'zeros'"]),
    "momentum_one_or_more": (["optimizer.momentum=1.5"], 2, ["optimizer.momentum=1.5", "0 <= value < 1"]),
    "adam_beta_above_one": (
        ["optimizer=adam", "optimizer.betas=[0.9,2]"], 2, ["optimizer.betas=[0.9, 2]", "0 <= value < 1"],
    ),
    "adam_eps_zero": (["optimizer=adam", "optimizer.eps=0"], 2, ["optimizer.eps=0", "a number > 0"]),
    "seed_negative": (["seed=-1"], 2, ["seed=-1", "an integer from 0 to 4294967295"]),
    "ddp_timeout_zero": (["ddp_timeout_s=0"], 2, ["ddp_timeout_s=0", "seconds > 0"]),
    "seed_too_large": (["seed=99999999999"], 2, ["seed=99999999999", "4294967295"]),
    "csv_without_path": (["data=csv"], 2, ["data.path", "Missing mandatory value"]),
    "fast_dev_run_maybe": (["trainer.fast_dev_run=maybe"], 2, ["trainer.fast_dev_run='maybe'", "true, false"]),
    "analytic_under_ddp": (
        ["model.optimization=analytic", "trainer=ddp_cpu"], 2, ["model.optimization=analytic", "DDP"],
    ),
    "clipping_with_manual_optimization": (
        ["model.optimization=manual", "+trainer.gradient_clip_val=1"], 2,
        ["trainer.gradient_clip_val=1", "model.optimization=automatic"],
    ),
    "predict_x_row_too_long": (["data.n_features=2", "predict_x=[[1,2,3]]"], 2, ["predict_x", "2 value(s)"]),
    "unknown_monitored_metric": (
        ["callbacks.checkpoint.monitor=val/accuracy"], 2,
        ["callbacks.checkpoint.monitor='val/accuracy'", "val/loss"],
    ),
    "imports: unavailable accelerator": (
        ["trainer.accelerator=mps"], 2, ["trainer.accelerator='mps'", "'cpu' or 'auto'"],
    ),
    "imports: misspelt trainer argument": (
        ["+trainer.max_epoch=5"], 2, ["trainer.max_epoch", "takes no argument 'max_epoch'", "max_epochs"],
    ),
    "imports: unknown model argument": (["+model.dropout=0.5"], 2, ["model.dropout", "bias, init, optimization"]),
    "imports: a network's input size given (the lesson's MNIST 784 for 8x8 digits)": (
        ["model=mlp", "data=digits", "+model.n_features=784"], 2,
        ["model.n_features", "gradlab sets it from the data"],
    ),
    "imports: a head for more classes than the data has": (
        ["model=cnn", "data=digits", "+model.n_classes=12"], 2,
        ["model.n_classes", "gradlab sets it from the data"],
    ),
    "unknown optimizer class": (
        ["optimizer._target_=torch.optim.Sgd"], 2, ["torch.optim.Sgd", "'torch.optim.SGD'"],
    ),
    "imports: misspelt strategy": (["trainer.strategy=dpp"], 2, ["trainer.strategy='dpp'", "ddp"]),
    "imports: resume without a run": (["resume=true"], 2, ["no run of 'default'", "without resume=true"]),
    "imports: missing checkpoint": (["ckpt_path=nowhere.ckpt"], 2, ["nowhere.ckpt", "no such checkpoint file"]),
    "imports: a one-row validation split": (
        ["data.n_samples=10"], 2, ["val split would hold 1 row", "at least 2"],
    ),
    # Hydra's own errors: before gradlab sees the config
    "hydra: unknown group option": (["model=transformer"], 2, ["Could not find 'model/transformer'", "linear"]),
    "hydra: unknown key": (["trainer.epochs=5"], 2, ["trainer.epochs"]),
    "hydra: override syntax": (["optimizer.lr=[1"], 2, ["no viable alternative at input '[1'"]),
    "hydra: a sweep without -m": (["optimizer.lr=0.1,0.01"], 2, ["--multirun"]),
}

# file name -> (file content, extra overrides, phrases). The target column is always "y".
GOOD_ROWS = "x,z,y\n1,2,3\n4,5,6\n7,8,9.5\n"
CSV_CASES = {
    "missing_file": (None, [], ["data.path=", "missing_file.csv", "no such file"]),
    "empty": ("", [], ["empty.csv", "the file is empty", "header row"]),
    "blank_lines_only": ("\n\n \n", [], ["blank_lines_only.csv", "the file is empty"]),
    "header_only": ("x,y\n", [], ["header_only.csv", "only a header row", "at least 2 data rows"]),
    "single_row": ("x,y\n1,2\n", [], ["single_row.csv", "1 data row", "at least 2 data rows"]),
    "missing_target": (
        "x,z\n1,2\n3,4\n5,6\n", [], ["missing_target.csv", "no column 'y' (data.target)", "['x', 'z']"],
    ),
    "misspelt_target": ("x,Y\n1,2\n3,4\n5,6\n", [], ["misspelt_target.csv", "no column 'y'", "did you mean 'Y'"]),
    "misspelt_feature": (
        GOOD_ROWS, ["data.features=[x,zz]"], ["no column 'zz' (data.features)", "did you mean 'z'"],
    ),
    "target_as_feature": (GOOD_ROWS, ["data.features=[x,y]"], ["data.features lists the target column 'y'"]),
    "text_cell": ("x,y\n1,2\n3,four\n5,6\n", [], ["text_cell.csv, line 3, column 'y'", "'four' is not a number"]),
    "empty_cell": ("x,y\n1,2\n,4\n5,6\n", [], ["empty_cell.csv, line 3, column 'x'", "the cell is empty"]),
    "nan_cell": ("x,y\n1,2\n3,4\nnan,6\n", [], ["nan_cell.csv, line 4, column 'x'", "'nan' is not finite"]),
    "inf_cell": ("x,y\n1,inf\n3,4\n5,6\n", [], ["inf_cell.csv, line 2, column 'y'", "'inf' is not finite"]),
    "minus_infinity_cell": (
        "x,y\n1,2\n3,4\n-Infinity,6\n", [], ["line 4, column 'x'", "'-Infinity' is not finite"],
    ),
    "ragged_short_row": (
        "x,z,y\n1,2,3\n4,5\n7,8,9\n", [], ["ragged_short_row.csv, line 3", "2 cells", "header has 3"],
    ),
    "ragged_long_row": ("x,y\n1,2\n3,4\n5,6,7\n", [], ["ragged_long_row.csv, line 4", "3 cells", "header has 2"]),
    "semicolons": ("x;y\n1;2\n3;4\n5;6\n", [], ["semicolons.csv", "single column", "comma-separated"]),
    "duplicate_column": ("x,x,y\n1,2,3\n4,5,6\n7,8,9\n", [], ["duplicate_column.csv", "['x'] more than once"]),
    "nameless_column": ("x,,y\n1,2,3\n4,5,6\n7,8,9\n", [], ["nameless_column.csv", "column 2", "no name"]),
    "binary": (b"\x80\x81\xff\x00\x12", [], ["binary.csv", "not a text CSV file", "UTF-8"]),
    "too_few_rows_to_validate": (
        "x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(10)), [], ["val split would hold 1 row", "at least 2"],
    ),
}


def _assert_refused(proc, code: int, phrases: list[str], cwd: Path) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    for phrase in phrases:
        assert phrase in out, f"{phrase!r} not in:\n{out}"
    assert "Traceback" not in out
    assert sorted(p.name for p in cwd.iterdir() if p.suffix != ".csv") == []  # no run dir, no outputs/


def _cases(table: dict) -> list:
    """Cases that import torch take seconds each, not a fraction of one: those run with the slow tests."""
    return [pytest.param(c, marks=pytest.mark.slow) if c.startswith("imports:") else c for c in table]


@pytest.mark.parametrize("case", _cases(CONFIG_CASES))
def test_a_bad_override_is_refused_with_its_key_and_what_is_allowed(case, tmp_path):
    overrides, code, phrases = CONFIG_CASES[case]
    short = [] if any(o.startswith("trainer.max_epochs=") for o in overrides) else ["trainer.max_epochs=3"]
    proc = run_script("train.py", *overrides, *short, cwd=tmp_path)  # short: were it not refused
    _assert_refused(proc, code, phrases, tmp_path)


def _write_case(name: str, tmp_path: Path) -> tuple[Path, list[str]]:
    content, extra, _ = CSV_CASES[name]
    path = tmp_path / f"{name}.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    return path, extra


@pytest.mark.parametrize("case", CSV_CASES)
def test_a_bad_csv_is_refused_naming_the_file_column_or_row(case, tmp_path):
    path, extra = _write_case(case, tmp_path)
    cfg = make_cfg("data=csv", f"data.path={path}", "data.target=y", *extra, root_dir=tmp_path / "runs")
    from gradlab.run.recipe import train

    with pytest.raises(DataError) as refused:
        train(cfg)
    for phrase in CSV_CASES[case][2]:
        assert phrase in str(refused.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", CSV_CASES)
def test_a_bad_csv_is_refused_by_the_command_line(case, tmp_path):
    path, extra = _write_case(case, tmp_path)
    proc = run_script("train.py", "data=csv", f"data.path={path.name}", "data.target=y", *extra,
                      "trainer.max_epochs=3", cwd=tmp_path)
    _assert_refused(proc, 2, CSV_CASES[case][2], tmp_path)


def test_a_bad_value_is_refused_before_torch_is_imported(tmp_path):
    proc = run_script("train.py", "optimizer.lr=-1", cwd=tmp_path, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 2
    log = [line for line in proc.stderr.splitlines() if line.startswith("import time")]
    imported = {line.rsplit("|", 1)[-1].strip() for line in log}
    assert "omegaconf" in imported  # the import log is there
    assert not {"torch", "lightning", "sklearn"} & imported


def test_hydra_full_error_shows_the_traceback(tmp_path):
    proc = run_script("train.py", "optimizer.lr=-1", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert "optimizer.lr=-1" in proc.stderr


def test_a_good_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_text("\ufeffx,y\n1,2\n3,4\n5,6\n", encoding="utf-8")
    x, y, _ = read_csv(str(path), "y", ["x"])  # the first column is 'x', not '\ufeffx'
    assert x[:, 0].tolist() == [1, 3, 5] and y.tolist() == [2, 4, 6]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))


def _composed_configs():
    """Every option of every group, and every experiment, as the command line would compose it."""
    csv = ["data.path=x.csv", "data.target=y"]
    for group in ("data", "model", "optimizer", "trainer", "logger", "callbacks", "scheduler", "experiment"):
        for option in _options(group):
            yield f"{group}={option}", [f"{group}={option}", *(csv if option in ("csv", "labelled_csv") else [])]


def _leaves(node, prefix: str = "") -> list[str]:
    """Dotted keys of every value in a config tree, e.g. 'trainer.max_epochs'."""
    keys = []
    for key, value in node.items():
        keys += _leaves(value, f"{prefix}{key}.") if OmegaConf.is_dict(value) else [f"{prefix}{key}"]
    return keys


@pytest.mark.parametrize("name,overrides", list(_composed_configs()), ids=[n for n, _ in _composed_configs()])
def test_every_shipped_config_passes_the_schema_and_its_classes(name, overrides):
    import torch

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    check(cfg)
    if cfg.trainer.accelerator != "gpu" or torch.cuda.is_available():
        check_arguments(cfg)


def _schema_classes():
    import msgspec

    from gradlab.checks import schema

    for union in (schema.Data, schema.Model, schema.Optimizer):
        yield from union.__args__
    yield from (schema.Trainer, schema.TensorBoard, schema.StepSchedule)
    for field in msgspec.inspect.type_info(schema.Callbacks).fields:
        yield next(t.cls for t in field.type.types if hasattr(t, "cls"))


@pytest.mark.parametrize("kind", list(_schema_classes()), ids=lambda k: k.__name__)
def test_the_schema_names_the_constructors_arguments(kind):
    """Each schema entry describes its class's constructor: gradlab's own classes exactly (every
    argument but the optimiser, which the recipe passes), a dependency's a subset of its arguments."""
    import inspect

    import msgspec
    from hydra.utils import get_object

    from gradlab.checks import schema

    info = msgspec.inspect.type_info(kind)
    params = set()
    for cls in inspect.getmro(get_object(info.tag)):  # a subclass passing **kwargs on takes its base's too
        signature = inspect.signature(cls.__init__).parameters
        params |= set(signature) - {"self", "args", "kwargs"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
            break
    keys = {f.encode_name for f in info.fields} - {"_partial_", *schema.RECIPE_KEYS}  # the recipe's, not theirs
    if issubclass(kind, schema.Node) and info.tag.startswith("gradlab."):
        assert keys == params - {"optimizer"}
    else:
        assert keys <= params, keys - params


def test_a_gpu_trainer_without_a_gpu_is_refused_before_a_run_directory():
    import torch

    cfg = make_cfg("trainer=gpu")
    check(cfg)  # fine as config: whether a GPU exists is only known once torch is imported
    if torch.cuda.is_available():
        check_arguments(cfg)
    else:
        with pytest.raises(ConfigError, match="no GPU that torch can use"):
            check_arguments(cfg)


class _Exited(Exception):
    pass


def _hydra_reports(error: Exception):
    """What Hydra's run_and_report does with an error: print it, then sys.exit(1) inside the except."""
    def hydra_main():
        try:
            raise error
        except Exception:
            raise SystemExit(1)  # noqa: B904 (Hydra's own way: the error stays as the context)
    return hydra_main


def test_main_exits_2_for_a_command_line_hydra_refuses_and_keeps_every_other_code(monkeypatch):
    def exit_now(code):
        raise _Exited(code)
    monkeypatch.setattr(cli, "exit_now", exit_now)
    with pytest.raises(_Exited) as refused:
        cli.main(_hydra_reports(MissingConfigException("Could not find 'model/transformer'", "model/transformer")))
    assert refused.value.args == (2,)
    with pytest.raises(SystemExit) as unexpected:  # a job's unexpected error: Hydra's exit 1 stands
        cli.main(_hydra_reports(ValueError("boom")))
    assert unexpected.value.code == 1
    def prints_help():  # --help, --cfg job: Hydra exits 0 itself
        raise SystemExit(0)
    with pytest.raises(SystemExit) as helped:
        cli.main(prints_help)
    assert helped.value.code == 0
    with pytest.raises(_Exited) as done:
        cli.main(lambda: 0.5)
    assert done.value.args == (0,)
