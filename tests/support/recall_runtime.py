"""Install a Recall runtime (nodes/runtime.py Runtime) for one test, and put the previous one back.

    with use_runtime(runtime.Runtime(config, store, namespace=lambda: "user-a")) as rt:
        ...

The runtime module may be loaded under another package name in a test (a bare `nodes`
package without ComfyUI), and a test may subclass Runtime, so the install function is
found through the module of the Runtime class the runtime is made from.
"""
import contextlib
import sys


@contextlib.contextmanager
def use_runtime(rt):
    base = next(c for c in type(rt).__mro__ if c.__name__ == "Runtime")
    module = sys.modules[base.__module__]
    previous = module.install(rt)
    try:
        yield rt
    finally:
        module.install(previous)
