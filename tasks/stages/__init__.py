"""Every pipeline stage under one contract (tasks/keyed.py): ``<stage>_plan`` gives its key and folder from the typed
settings and refs it is handed, and the stage function finds its output by that key or builds it. No Prefect here and
no config file read: the flows (flows/stages.py) wrap each stage function in a one-line Prefect task.

- models.py: data, base model, trainings, DPO, exports (the stages that load a model hold a machine slot and, for
  trainings and exports, run in a process of their own)
- evaluation.py: one suite on one GGUF, a model/format's result set, the isolated speed samples
- verdict.py: degradation gates, the decision, report, upload (or its dry run), the details dataset, the run's names
"""
