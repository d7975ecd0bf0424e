"""Prefect only: the flows (compare.py, nightly.py) that wire the stages, the one-line @task wrappers around
tasks/stages (stages.py), what a run shows in the UI (run_results.py), the run forms (params.py), the set-up the
flows and the command line share (setup.py), and the command line (cli/). No file I/O, no arithmetic on scores, no
torch here: the work is in tasks/ (tests/test_flows_wire.py, tests/test_layering.py)."""
