"""Experiments that test the papers' claims on top of training: degradation (DRL Figure 6, Table 6), gradient
flow (DRL section 4.1), layer responses (DRL Figure 7), shortcut options (DRL Table 3) and pre-activation (IM
Table 2); each writes tables, figures with their CSVs and ``experiment.json``, and ``report`` gathers them."""

from resnetlab.experiments.degradation import run_degradation
from resnetlab.experiments.gradients import gradient_norms, run_gradients
from resnetlab.experiments.report import build_report
from resnetlab.experiments.responses import layer_response_stds, run_responses
from resnetlab.experiments.variants import run_preact, run_shortcuts

__all__ = ["build_report", "gradient_norms", "layer_response_stds", "run_degradation", "run_gradients",
           "run_preact", "run_responses", "run_shortcuts"]
