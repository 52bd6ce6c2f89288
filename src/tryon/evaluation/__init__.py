"""Measured quality: ``tryon eval`` and the validation of fine-tuning runs.

Heavy (torch, torchmetrics, transformers, scipy, matplotlib): the ``eval`` extra. Never imported
by :mod:`tryon.core`, :mod:`tryon.workflow` or the Lambda functions.

- :mod:`~tryon.evaluation.eval_rows`: the rows (manifests, VITON-HD and DressCode folders);
- :mod:`~tryon.evaluation.workflow_rows`: running the workflow on them (local or deployed);
- :mod:`~tryon.evaluation.pixel_metrics`, :mod:`~tryon.evaluation.feature_metrics`,
  :mod:`~tryon.evaluation.set_metrics`: the metrics; :mod:`~tryon.evaluation.inception`: FID's network;
- :mod:`~tryon.evaluation.metric_models`: where the metric networks' weights come from;
- :mod:`~tryon.evaluation.scoring`: families, per-row scores, summaries by class and seed;
- :mod:`~tryon.evaluation.eval_report`: eval.json, eval.csv, eval.html; :mod:`~tryon.evaluation.anchors`;
- :mod:`~tryon.evaluation.eval_compare`: two evaluations side by side, with seed noise;
- :mod:`~tryon.evaluation.eval_pipeline`: the whole run, as ``tryon eval`` does it;
- :mod:`~tryon.evaluation.tiny_metrics`: random metric networks built in code (tests, benchmarks).
"""
