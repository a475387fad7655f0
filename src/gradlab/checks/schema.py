"""The config schema: every key gradlab's YAML offers, its type and its range, declared once.

msgspec structs (typed, with `Meta` ranges, unknown keys refused), one per class a config group
names: its `_target_` is the struct's tag, so `data=toy` is checked as ToyDataModule's arguments
and `+data.n_samples=5` is refused there. Lightning's and torch's classes (the Trainer, the logger,
ModelCheckpoint) accept keys the schema does not list; gradlab.checks.config asks their signatures
once they are imported. The defaults live in conf/; here a key is optional unless conf/ leaves it
`???`. `description` is the "what is allowed" of a message, where the type alone does not say it.

Why msgspec: it holds types, ranges, literals and unknown-key refusal like pydantic, and imports in
about 10 ms, against pydantic's 100 ms, a third of what a refused value takes today (README).
"""


from typing import Annotated, Literal

from msgspec import Meta, Struct, field

SEED_MAX = 2**32 - 1  # numpy's (and so Lightning's seed_everything's) limit
METRICS = ("val/loss", "val/mae", "val/r2", "train/loss")

# --------------------------------------------------------------------------- types a key can have
# (annotations are real objects, no `from __future__ import annotations`: msgspec then reads them
# without evaluating strings, which halves the first check)

Seed = Annotated[int, Meta(ge=0, le=SEED_MAX)]
Count = Annotated[int, Meta(ge=1)]  # an integer >= 1
Every = Annotated[int, Meta(ge=0)]  # every N epochs, 0: only at the end
Fraction = Annotated[float, Meta(ge=0, lt=1)]
Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Text = Annotated[str, Meta(pattern=r"\S", description="a non-empty text")]
Name = Annotated[str, Meta(
    pattern=r"^(?!\.\.?$)[^/\\\x00\s](?:[^/\\\x00]*[^/\\\x00\s])?$",
    description="a single directory name for the run, e.g. name=my_run (no '/' or '\\', not '.' or '..', "
                "so not absolute either; not empty, no leading or trailing space), so the run lands in "
                "root_dir/<name>/")]
# a checkpoint file name that stays in checkpoints/: no folder outside the {metric} placeholders
# (Lightning fills those in), no '..'
FilePattern = Annotated[str, Meta(
    pattern=r"^(?!.*\.\.)(?:\{[^{}]*\}|[^/\\\x00{}])+$",
    description="a file name pattern, e.g. 'best-{epoch}' (no folders, no '..')")]
Row = Annotated[list[float], Meta(min_length=1)]
Inputs = Annotated[float | Annotated[list[float | Row], Meta(min_length=1)], Meta(
    description="a number or a list of inputs, each a number (used for every feature) or a row with one "
                "number per feature, e.g. predict_x=[5,7]")]
Batches = Annotated[None | Every | Annotated[float, Meta(ge=0, le=1)], Meta(
    description="null, an integer >= 0 or a fraction 0..1")]
Optimization = Literal["automatic", "manual", "analytic"]
Init = Literal["default", "zeros"]


class Node(Struct, kw_only=True, forbid_unknown_fields=True, tag_field="_target_"):
    """A config node that builds an object of the class its `_target_` names."""


class OpenNode(Struct, kw_only=True, tag_field="_target_"):
    """A node for a dependency's class: keys the schema does not list are asked of its signature."""


# --------------------------------------------------------------------------- data (gradlab.lessons.data)

BatchSize = Annotated[None | Annotated[int, Meta(ge=2)], Meta(description="null (full batch) or an integer >= 2")]


Loader = Annotated[Literal["memory", "dataloader"], Meta(
    description="'memory' (batches cut from the stored tensors) or 'dataloader' (a torch Dataset and "
                "DataLoader, lesson 09: the same batches)")]
Transforms = Annotated[None | list[Annotated[str, Meta(pattern=r"^(?:ToTensor|MulTransform\([-+0-9.eE]+\)|"
                                                           r"[A-Za-z_][\w.]*\.[A-Za-z_]\w*)$")]], Meta(
    description="null or a list of transforms applied to each sample with data.loader=dataloader, in order: "
                "ToTensor, MulTransform(F) (F a number; quote it on a command line: "
                "'data.transforms=[ToTensor,\"MulTransform(4)\"]') or the dotted path of your own callable "
                "class, e.g. my_transforms.Flip")]


class Loading(Node):
    """How batches are served (every datamodule takes these)."""

    loader: Loader = "memory"
    transforms: Transforms = None


class ToyData(Loading, tag="gradlab.lessons.data.ToyDataModule"):
    batch_size: BatchSize = None
    shuffle: bool = False
    seed: Seed = 42


class Splits(Loading):
    val_fraction: Fraction = 0.1
    test_fraction: Fraction = 0.1
    batch_size: BatchSize = None
    shuffle: bool = True
    standardize: bool = False
    seed: Seed = 42


class RegressionData(Splits, tag="gradlab.lessons.data.RegressionDataModule"):
    n_samples: Annotated[int, Meta(ge=2)] = 100
    n_features: Count = 1
    noise: NonNegative = 20.0
    random_state: Seed = 1


class DiabetesData(Splits, tag="gradlab.lessons.data.DiabetesDataModule"):
    pass


class CsvData(Splits, kw_only=True, tag="gradlab.lessons.data.CsvDataModule"):
    path: Annotated[str, Meta(pattern=r"\S", description="the path of a CSV file with a header row")]
    target: Annotated[str, Meta(pattern=r"\S", description="the name of the target column")]
    features: Annotated[None | Annotated[list[Text], Meta(min_length=1)], Meta(
        description="null (all other columns) or a list of column names")] = None


class Classes(Splits):
    labels: Literal["binary", "index"] = "index"  # given by the recipe from the model, never in the YAML
    split: Annotated[Literal["seeded", "train_test_split"], Meta(
        description="'seeded' (gradlab's) or 'train_test_split' (sklearn's)")] = "seeded"


class BreastCancerData(Classes, tag="gradlab.lessons.data.BreastCancerDataModule"):
    pass


class WineData(Classes, tag="gradlab.lessons.data.WineDataModule"):
    pass


class IrisData(Classes, tag="gradlab.lessons.data.IrisDataModule"):
    pass


class LabelledCsvData(Classes, kw_only=True, tag="gradlab.lessons.data.LabelledCsvDataModule"):
    path: Annotated[str, Meta(pattern=r"\S", description="the path of a CSV file with a header row")]
    target: Annotated[str, Meta(pattern=r"\S", description="the name of the label column")]
    features: Annotated[None | Annotated[list[Text], Meta(min_length=1)], Meta(
        description="null (all other columns) or a list of column names")] = None


class DigitsData(Classes, tag="gradlab.lessons.data.DigitsDataModule"):
    keep_classes: Annotated[list[Annotated[int, Meta(ge=0, le=9)]], Meta(
        min_length=2, description="null (all ten digits) or a list of at least 2 digits 0 ... 9, relabelled "
                                  "0, 1, ... in that order, e.g. data.keep_classes=[5,6,7,8,9]")] | None = None


Data = (ToyData | RegressionData | DiabetesData | CsvData | BreastCancerData | WineData | IrisData
        | LabelledCsvData | DigitsData)

# --------------------------------------------------------------------------- models (gradlab.lessons)


# keys under model that the recipe applies to the model it built (gradlab.run.transfer), no constructor's
RECIPE_KEYS = ("init_from", "freeze")


class Transferable(Node):
    init_from: Annotated[str, Meta(pattern=r"\S", description="null or the path of a .ckpt file to start "
                                                              "from (its weights; the optimiser starts fresh)")
                         ] | None = None
    freeze: Annotated[list[Text], Meta(description="a list of submodule names or parameter-name prefixes to "
                                                   "keep fixed, e.g. model.freeze=[features]")
                      ] = field(default_factory=list)


class LinearModel(Transferable):
    n_features: Count | None = None  # given by the recipe from the data; stored in checkpoints
    bias: bool = True
    init: Init = "default"
    optimization: Optimization = "automatic"


class LinearRegressor(LinearModel, tag="gradlab.lessons.linear.LinearRegressor"):
    pass


class LogisticClassifier(LinearModel, tag="gradlab.lessons.classifiers.LogisticClassifier"):
    pass


class SoftmaxClassifier(LinearModel, tag="gradlab.lessons.classifiers.SoftmaxClassifier"):
    n_classes: Annotated[int, Meta(ge=2)] | None = None  # given by the recipe from the data


class MLP(Transferable, tag="gradlab.lessons.mlp.MLP"):
    n_features: Count | None = None  # given by the recipe from the data; stored in checkpoints
    n_classes: Annotated[int, Meta(ge=2)] | None = None  # given by the recipe from classified data
    hidden: Annotated[list[Count], Meta(
        min_length=1, description="a list of hidden layer widths, at least one, each an integer >= 1, e.g. "
                                  "model.hidden=[500] or model.hidden=[64,32]")
                    ] = field(default_factory=lambda: [500])
    activation: Annotated[Literal["relu", "tanh", "sigmoid", "leaky_relu"], Meta(
        description="'relu', 'tanh', 'sigmoid' or 'leaky_relu' (slope 0.01), each with its derivative "
                    "written out for model.optimization=analytic")] = "relu"
    init: Annotated[Literal["default"], Meta(
        description="'default' (PyTorch's random weights) only: from zeros every hidden unit of a layer "
                    "computes the same value and gets the same gradient, so they never become different "
                    "(and with relu, relu'(0) = 0 gives no gradient at all): the network would never "
                    "learn")] = "default"
    optimization: Optimization = "automatic"


class CNN(Transferable, tag="gradlab.lessons.cnn.CNN"):
    n_features: Count | None = None  # given by the recipe from the data; stored in checkpoints
    n_classes: Annotated[int, Meta(ge=2)] | None = None  # given by the recipe from the data
    image_shape: list[Count] | None = None  # given by the recipe from the data: (H, W) or (C, H, W)
    channels: Annotated[list[Count], Meta(
        min_length=1, description="a list of output channels, one convolution each (at least one), e.g. "
                                  "model.channels=[6,16]")] = field(default_factory=lambda: [6, 16])
    kernel_size: Annotated[int, Meta(ge=1, description="an integer >= 1, each convolution's kernel "
                                                       "height and width, e.g. model.kernel_size=3")] = 3
    padding: Every = 1
    pool: Annotated[int, Meta(ge=1, description="an integer >= 1, the max-pooling window and stride after "
                                                "each convolution (1: no pooling)")] = 2
    hidden: Annotated[list[Count], Meta(
        description="a list of the head's hidden widths, e.g. model.hidden=[120,84] ([] : one linear "
                    "layer)")] = field(default_factory=lambda: [120, 84])
    optimization: Annotated[Literal["automatic", "manual"], Meta(
        description="'automatic' or 'manual' (the lesson's loop); there is no 'analytic' path for a CNN: "
                    "backpropagation through a convolution written out by hand is past the course (use "
                    "model=mlp for backprop written out)")] = "automatic"


Model = LinearRegressor | LogisticClassifier | SoftmaxClassifier | MLP | CNN

# --------------------------------------------------------------------------- optimizers (torch.optim)


class TorchOptimizer(Node):
    partial: bool = field(default=True, name="_partial_")  # the parameters come in configure_optimizers
    lr: Annotated[float, Meta(gt=0, description="a number > 0, e.g. optimizer.lr=0.01")] = 0.01
    weight_decay: NonNegative = 0.0
    maximize: bool = False
    foreach: bool | None = None
    differentiable: bool = False
    fused: bool | None = None


class SGD(TorchOptimizer, tag="torch.optim.SGD"):
    momentum: Fraction = 0.0
    dampening: Annotated[float, Meta(ge=0, le=1)] = 0.0
    nesterov: bool = False


class Adam(TorchOptimizer, tag="torch.optim.Adam"):
    betas: Annotated[tuple[Fraction, Fraction], Meta(
        description="two numbers, each with 0 <= value < 1, e.g. optimizer.betas=[0.9,0.999]")] = (0.9, 0.999)
    eps: Annotated[float, Meta(gt=0, description="a number > 0, e.g. 1e-8")] = 1e-8
    amsgrad: bool = False
    capturable: bool = False
    decoupled_weight_decay: bool = False


Optimizer = SGD | Adam

# --------------------------------------------------------------------------- trainer, logger (Lightning)


class Trainer(OpenNode, tag="lightning.pytorch.Trainer"):
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "cpu"
    devices: Annotated[Literal["auto"] | Annotated[int, Meta(ge=-1)] | Annotated[list[Every], Meta(min_length=1)],
                       Meta(description="an integer >= 1, -1 (every device), 'auto' or a list of device "
                                        "indices")] = 1
    strategy: Annotated[str, Meta(pattern=r"\S", description="a Lightning strategy name, e.g. 'auto' or "
                                                             "'ddp'")] = "auto"
    num_nodes: Count = 1
    max_epochs: Count = 1000
    min_epochs: Every | None = None
    max_steps: Annotated[int, Meta(ge=-1, description="-1 (no limit) or an integer >= 0")] = -1
    log_every_n_steps: Count = 50
    check_val_every_n_epoch: Count = 1
    fast_dev_run: bool | Count = False
    deterministic: bool | None = None
    enable_progress_bar: Annotated[bool, Meta(
        description="true (callbacks.progress: a line at a terminal, the loss when piped) or false (no "
                    "progress at all)")] = True
    enable_model_summary: bool | None = None
    num_sanity_val_steps: Every = 0
    accumulate_grad_batches: Count = 1
    gradient_clip_val: NonNegative | None = None
    limit_train_batches: Batches = None
    limit_val_batches: Batches = None
    limit_test_batches: Batches = None


class TensorBoard(OpenNode, tag="gradlab.show.tensorboard.EpochlessTensorBoardLogger"):
    default_hp_metric: bool = False
    log_graph: bool = False
    prefix: str = ""


# --------------------------------------------------------------------------- callbacks


class ModelCheckpoint(OpenNode, tag="lightning.pytorch.callbacks.ModelCheckpoint"):
    monitor: Literal[METRICS] | None = None  # type: ignore[valid-type]
    mode: Literal["min", "max"] = "min"
    save_top_k: Annotated[int, Meta(ge=-1, description="-1 (all), 0 (none) or an integer >= 1")] = 1
    # Lightning's save_last="link" makes last.ckpt a link to an older best: a resume would go back
    save_last: Annotated[bool | None, Meta(description="null, true or false ('link' is refused: last.ckpt "
                                                        "stays a real file with the newest state)")] = None
    dirpath: None = None  # always the run's checkpoints/: a config never names where checkpoints go
    every_n_epochs: Count | None = None
    filename: FilePattern | None = None
    enable_version_counter: bool = True


class FitPlots(Node, tag="gradlab.show.pictures.FitPlots"):
    every_n_epochs: Every = 200


class WeightHistograms(Node, tag="gradlab.show.tensorboard.WeightHistograms"):
    every_n_epochs: Every = 100
    min_values: Count = 11


class ClassifierBoard(Node, tag="gradlab.show.tensorboard.ClassifierBoard"):
    n_images: Count = 64
    graph: bool = True


class TrainingCurves(Node, tag="gradlab.show.tensorboard.TrainingCurves"):
    max_coefficients: Annotated[int, Meta(ge=0, description="an integer >= 0 (0: no w and b curves)")] = 10


class EpochProgress(Node, tag="gradlab.show.progress.EpochProgress"):
    refresh_per_second: Annotated[float, Meta(gt=0, description="a number > 0, e.g. 10")] = 10.0
    print_every_n_epochs: Annotated[int, Meta(ge=0, description="an integer >= 0 (0: about ten lines a "
                                                                "run)")] = 0


class LessonLines(Node, tag="gradlab.show.lesson.LessonLines"):
    every_n_steps: Count = 100
    style: Annotated[Literal["feedforward", "cnn", "dataloader"], Meta(
        description="'feedforward' (lesson 13's loss line), 'cnn' (the same, then lesson 14's 'Finished "
                    "Training') or 'dataloader' (lesson 09's batch shapes)")
                     ] = "feedforward"


class StepSchedule(Node, tag="gradlab.run.schedule.StepSchedule"):
    step_size: Annotated[int, Meta(ge=1, description="an integer >= 1, the epochs between two decays, e.g. "
                                                     "scheduler.step_size=7")] = 7
    gamma: Annotated[float, Meta(gt=0, le=1, description="a number in (0, 1], the factor at each decay, e.g. "
                                                         "scheduler.gamma=0.1")] = 0.1


class Callbacks(Struct, kw_only=True, forbid_unknown_fields=True):
    """conf/callbacks/default.yaml: each callback by its name (~callbacks.NAME removes one)."""

    checkpoint: ModelCheckpoint | None = None  # the best on val/loss
    last: ModelCheckpoint | None = None  # checkpoints/last.ckpt
    plots: FitPlots | None = None
    histograms: WeightHistograms | None = None
    curves: TrainingCurves | None = None
    progress: EpochProgress | None = None
    lesson: LessonLines | None = None  # the course experiments': the lines the lesson's loop prints
    board: ClassifierBoard | None = None  # lesson 16: the graph, an image grid and PR curves, for a classifier

# --------------------------------------------------------------------------- what each script runs


class Where(Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a script finds its runs."""

    name: Name = "default"
    # ~ and $VAR are left to the shell: expanded by gradlab, but not by Hydra's sweep folder, a run
    # would be split between two places
    root_dir: Annotated[str, Meta(pattern=r"^(?!~)(?=.*\S)[^$\x00]+$", description=(
        "a non-empty directory path (relative to where you run the script) without '~' or '$': let the shell "
        "expand those, unquoted (root_dir=$HOME/runs)"))] = "lightning_logs"
    ckpt_path: Annotated[str, Meta(pattern=r"\S", description="null, 'last', or the path of a .ckpt "
                                                              "file")] | None = None


class CourseTransfer(Struct, kw_only=True, forbid_unknown_fields=True):
    """experiment=course_transfer's plan (gradlab.run.course)."""

    pretrain_classes: Annotated[list[Annotated[int, Meta(ge=0, le=9)]], Meta(min_length=2)]
    classes: Annotated[list[Annotated[int, Meta(ge=0, le=9)]], Meta(min_length=2)]
    epochs: Count = 1


class TrainRun(Where, kw_only=True):
    """conf/train.yaml."""

    data: Data
    model: Model
    optimizer: Optimizer
    trainer: Trainer
    logger: TensorBoard | None = None
    callbacks: Callbacks | None = None
    scheduler: StepSchedule | None = None
    transfer: CourseTransfer | None = None  # experiment=course_transfer: four runs (gradlab.run.course)
    seed: Seed = 42
    predict_x: Inputs = 5.0
    resume: bool = False
    print_config: bool = False
    threads: Annotated[Literal["auto"] | Annotated[int, Meta(ge=1)], Meta(
        description="'auto' (1 torch thread for a small model, torch's choice for a large one) or an "
                    "integer >= 1")] = "auto"
    ddp_timeout_s: Annotated[float, Meta(gt=0, le=86400, description="seconds > 0 (at most a day), e.g. "
                                                                      "ddp_timeout_s=300")] = 300


class EvalRun(Where):
    """conf/eval.yaml."""

    data_path: Annotated[str, Meta(pattern=r"\S", description="null (the run's config.yaml says) or the "
                                                              "path of the run's CSV file")] | None = None


class PredictRun(Where):
    """conf/predict.yaml."""

    x: Annotated[Inputs, Meta(description="a number or a list of inputs, each a number (used for every "
                                          "feature) or a row with one number per feature, e.g. x=[5,7]")
                 ] | None = None
    input: Text | None = None
    output: Annotated[str, Meta(pattern=r"\S", description="null (predictions.csv in the run's directory) or "
                                                          "the path of the CSV file to write")] | None = None


class CompareRuns(Struct, kw_only=True, forbid_unknown_fields=True):
    """conf/compare.yaml."""

    root_dir: Annotated[str, Meta(pattern=r"\S", description="a non-empty directory path (relative to where "
                                                             "you run the script)")] = "lightning_logs"
    name: Name | None = None
    experiment: Name | None = None
    sweep: Text | None = None
    sort: Annotated[str, Meta(pattern=r"\S", description="a column of the table, e.g. val/loss")] | None = None
    top: Annotated[int, Meta(ge=1)] | None = None
    output: Annotated[str, Meta(pattern=r"\S", description="the path of the CSV file to write")] | None = None


class ExportRun(Where):
    """conf/export.yaml."""

    output: Annotated[str, Meta(pattern=r"\S", description="null (model.pt in the run's folder) or the path "
                                                           "of the file to write")] | None = None
