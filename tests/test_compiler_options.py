"""The compiler-option allowlist (kubep4.p4.compiler_option_problem) that admission and the node's
compiler both apply: defines and diagnostics switches only, nothing that names a file, the target or the arch."""
import pytest

from kubep4.p4 import compiler_option_problem


@pytest.mark.parametrize("option", ["-DFOO", "-DFOO=1", "-DWIDTH=32", "-UBAR", "--Wdisable", "--Wwarn=uninitialized",
                                    "--Werror=unused,shadow", "-w", "--std=p4-16"])
def test_allowed_compiler_options(option):
    assert compiler_option_problem(option) is None


@pytest.mark.parametrize("option", ["-o", "-I/x", "--p4runtime-files=/x", "--pp", "@f", "-DX=$(id)", "-DX=a b",
                                    "--arch=psa", "-D", "--Wwarn=../x", "--top4=x", ""])
def test_refused_compiler_options(option):
    assert compiler_option_problem(option)
