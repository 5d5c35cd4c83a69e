"""Install a Recall runtime (nodes/runtime.py Runtime) for one test, and put the previous one back.

    with use_runtime(runtime.Runtime(config, store, namespace=lambda: "user-a")) as rt:
        ...

The runtime module may be loaded under another package name in a test (a bare `nodes`
package without ComfyUI), so the install function is found through the runtime's class.
"""
import contextlib
import sys


@contextlib.contextmanager
def use_runtime(rt):
    module = sys.modules[type(rt).__module__]
    previous = module.install(rt)
    try:
        yield rt
    finally:
        module.install(previous)
