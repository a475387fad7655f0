"""hydra/launcher=joblib: sweep jobs in worker processes, stopped gently (gradlab.run.signals).

gradlab.run.sweeps.register_launcher makes `hydra/launcher=joblib` name this class, with the plugin's
own settings (hydra.launcher.n_jobs, ...). Hydra instantiates plugins only from the hydra_plugins
namespace package, hence this module's place.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as PluginJoblibLauncher
from omegaconf import DictConfig

from gradlab.run import cli, signals
from gradlab.run.sweeps import SweepSummary


class JoblibLauncher(PluginJoblibLauncher):
    """hydra-joblib-launcher's launcher (hydra/launcher=joblib), stopped gently: on a stop each running
    job ends its epoch with a checkpoint, no job starts after it (gradlab.run.signals), and the sweep ends
    when the batch has, with its table and every stopped job's continue command. Ending it here, not in
    the sweeper, also keeps a sweeper that asks in batches (Optuna) from asking for the next, or from
    being told the value of a job that did not finish."""

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        signals.stop_workers_gently()

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns = super().launch(job_overrides, initial_job_idx)
        if signals.received is not None:
            SweepSummary().on_multirun_end(self.config)
            cli.exit_now(128 + signals.received)
        return returns
