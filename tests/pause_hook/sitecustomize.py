"""Test hook (tests/test_kill.py): with ALPHAGATE_TEST_PAUSE=eval|decide|report, that stage's function, once its
module is imported, writes ALPHAGATE_TEST_PAUSE_MARKER and sleeps, so that a test can stop a run while the stage
runs. Installed only through the PYTHONPATH of the runs that test starts."""

import importlib.abc
import os
import sys

_TARGETS = {"eval": ("tasks.bench.runner", "run_suite"), "decide": ("tasks.decide.decision", "decide"),
            "report": ("tasks.publish.report", "write_report")}


def _paused(*_args, **_kwargs):
    import time

    with open(os.environ["ALPHAGATE_TEST_PAUSE_MARKER"], "w") as marker:
        marker.write(str(os.getpid()))
    time.sleep(3600)


class _Patch(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def find_spec(self, fullname, path, target=None):
        # every spec of the module is patched, not only the first: the stage keys look modules up
        # (importlib.util.find_spec) without executing them, before the real import asks again
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module):
            original(module)
            setattr(module, self.name, _paused)

        loader.exec_module = exec_module
        return spec


if os.environ.get("ALPHAGATE_TEST_PAUSE") in _TARGETS:
    import importlib.util

    sys.meta_path.insert(0, _Patch(*_TARGETS[os.environ["ALPHAGATE_TEST_PAUSE"]]))
