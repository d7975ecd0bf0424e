"""The pipeline's work as plain functions, without Prefect: every stage under one contract (keyed.py: a key from the
typed settings and refs a stage is handed, a build into a staging folder; stages/: each stage's plan and function),
the keyed store (store.py, keys.py), stage processes and machine slots (procs.py, slots.py, model_slots.py), the
config models validated once at the boundary (config.py), and one package per stage family: data/, train/, export/,
bench/, decide/, publish/, serve/."""
