"""Direct access to SCIP's C library for Numba kernels and fast Python look-ups.

PySCIPOpt's wheel ships ``libscip`` (``pyscipopt.libs/libscip*.so*``) with every public
``SCIP*`` function exported, including the ``SCIPcolGet*``/``SCIProwGet*`` accessors that are
macros only inside SCIP's own optimised build. Loading that same library into LLVM's symbol
table (``llvmlite.binding.load_library_permanently``) lets ``@njit`` kernels call those
functions by name as `numba.types.ExternalFunction`s; calls are resolved by symbol name, so
``cache=True`` kernels stay valid across processes.

Conventions: every SCIP pointer travels as an unsigned 64-bit integer (``uintp``); SCIP_Bool
is a 32-bit unsigned int; enums are 32-bit ints. The pointer of a PySCIPOpt model comes from
`scip_pointer`, of a variable from ``Variable.ptr()``.
"""

from __future__ import annotations

import ctypes
import glob
import os

import llvmlite.binding as llvm
import pyscipopt
from numba import types

__all__ = ["LIBSCIP_PATH", "libscip", "scip_pointer", "var_probindex"]


def _find_libscip() -> str:
    base = os.path.dirname(os.path.dirname(pyscipopt.__file__))
    found = sorted(glob.glob(os.path.join(base, "pyscipopt.libs", "libscip*.so*")))
    if not found:
        # A PySCIPOpt built against a system SCIP links it from the standard search path.
        found = sorted(glob.glob(os.path.join(os.path.dirname(pyscipopt.__file__), "libscip*")))
    if not found:
        raise ImportError("libscip not found next to PySCIPOpt: NodeBipartite needs it")
    return found[0]


LIBSCIP_PATH = _find_libscip()
llvm.load_library_permanently(LIBSCIP_PATH)
libscip = ctypes.CDLL(LIBSCIP_PATH)

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

libscip.SCIPvarGetProbindex.restype = ctypes.c_int
libscip.SCIPvarGetProbindex.argtypes = [ctypes.c_void_p]


def scip_pointer(model: pyscipopt.Model) -> int:
    """The address of the model's ``SCIP*`` (the model keeps ownership)."""
    return int(_capsule_pointer(model.to_ptr(False), b"scip"))


libscip.SCIPisLPConstructed.restype = ctypes.c_uint
libscip.SCIPisLPConstructed.argtypes = [ctypes.c_void_p]


def lp_constructed(model: pyscipopt.Model) -> bool:
    """``SCIPisLPConstructed``: whether the current node has an LP to read (not where every
    node branches on pseudo-solutions, ``lp/solvefreq = -1``)."""
    return bool(libscip.SCIPisLPConstructed(scip_pointer(model)))


def var_probindex(var: pyscipopt.Variable) -> int:
    """``SCIPvarGetProbindex``: the variable's position in the transformed problem, -1 if
    it is not active."""
    return int(libscip.SCIPvarGetProbindex(var.ptr()))


P = types.uintp
F = types.float64
I32 = types.int32
B = types.uint32


def _ext(name: str, sig) -> types.ExternalFunction:
    return types.ExternalFunction(name, sig)


# Problem-level
SCIPgetNVars = _ext("SCIPgetNVars", I32(P))
SCIPgetVars = _ext("SCIPgetVars", types.CPointer(P)(P))
SCIPgetNLPCols = _ext("SCIPgetNLPCols", I32(P))
SCIPgetLPCols = _ext("SCIPgetLPCols", types.CPointer(P)(P))
SCIPgetNLPRows = _ext("SCIPgetNLPRows", I32(P))
SCIPgetLPRows = _ext("SCIPgetLPRows", types.CPointer(P)(P))
SCIPgetObjNorm = _ext("SCIPgetObjNorm", F(P))
SCIPgetNLPs = _ext("SCIPgetNLPs", types.int64(P))
SCIPgetBestSol = _ext("SCIPgetBestSol", P(P))
SCIPgetSolVal = _ext("SCIPgetSolVal", F(P, P, P))
SCIPinfinity = _ext("SCIPinfinity", F(P))
SCIPepsilon = _ext("SCIPepsilon", F(P))
SCIPfeastol = _ext("SCIPfeastol", F(P))
SCIPfeasFrac = _ext("SCIPfeasFrac", F(P, F))
SCIPisEQ = _ext("SCIPisEQ", B(P, F, F))
SCIPisPositive = _ext("SCIPisPositive", B(P, F))
SCIPgetRowLPActivity = _ext("SCIPgetRowLPActivity", F(P, P))
SCIPgetVarRedcost = _ext("SCIPgetVarRedcost", F(P, P))
# Variables
SCIPvarGetProbindex = _ext("SCIPvarGetProbindex", I32(P))
SCIPvarGetType = _ext("SCIPvarGetType", I32(P))
SCIPvarIsImpliedIntegral = _ext("SCIPvarIsImpliedIntegral", B(P))
SCIPvarGetObj = _ext("SCIPvarGetObj", F(P))
SCIPvarGetCol = _ext("SCIPvarGetCol", P(P))
SCIPvarGetStatus = _ext("SCIPvarGetStatus", I32(P))
SCIPvarGetLPSol = _ext("SCIPvarGetLPSol", F(P))
SCIPvarGetAvgSol = _ext("SCIPvarGetAvgSol", F(P))
SCIPvarGetLbLocal = _ext("SCIPvarGetLbLocal", F(P))
SCIPvarGetUbLocal = _ext("SCIPvarGetUbLocal", F(P))
# Columns
SCIPcolGetVar = _ext("SCIPcolGetVar", P(P))
SCIPcolGetLb = _ext("SCIPcolGetLb", F(P))
SCIPcolGetUb = _ext("SCIPcolGetUb", F(P))
SCIPcolGetPrimsol = _ext("SCIPcolGetPrimsol", F(P))
SCIPcolGetAge = _ext("SCIPcolGetAge", I32(P))
SCIPcolGetBasisStatus = _ext("SCIPcolGetBasisStatus", I32(P))
SCIPcolGetLPPos = _ext("SCIPcolGetLPPos", I32(P))
SCIPcolGetObj = _ext("SCIPcolGetObj", F(P))
# Rows
SCIProwGetLhs = _ext("SCIProwGetLhs", F(P))
SCIProwGetRhs = _ext("SCIProwGetRhs", F(P))
SCIProwGetConstant = _ext("SCIProwGetConstant", F(P))
SCIProwGetNorm = _ext("SCIProwGetNorm", F(P))
SCIProwGetNLPNonz = _ext("SCIProwGetNLPNonz", I32(P))
SCIProwGetNNonz = _ext("SCIProwGetNNonz", I32(P))
SCIProwGetCols = _ext("SCIProwGetCols", types.CPointer(P)(P))
SCIProwGetVals = _ext("SCIProwGetVals", types.CPointer(F)(P))
SCIProwGetDualsol = _ext("SCIProwGetDualsol", F(P))
SCIProwGetAge = _ext("SCIProwGetAge", I32(P))
