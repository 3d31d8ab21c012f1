"""P4 compilers as the builder and ``kubep4 bench compile`` run them: the backends (p4c, T4P4S,
P4LLVM) with their real command lines and outputs, bounded child processes, diagnostics."""
from kubep4.compilers.backends import (
    BACKENDS,
    P4LLVM_UNAVAILABLE,
    CompileFailed,
    Output,
    Toolchain,
    option_problem,
)
from kubep4.compilers.run import Limits

__all__ = ["BACKENDS", "P4LLVM_UNAVAILABLE", "CompileFailed", "Limits", "Output", "Toolchain", "option_problem"]
