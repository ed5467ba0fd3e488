"""Explicit 256-bit SIMD for numba CPU kernels: a vector type and the few operations the kernels use.

numba leaves vectorisation to LLVM's loop vectoriser, which gives up on loops with many memory streams (it
must prove at run time that no two overlap) and cannot keep accumulators in registers across an inner loop.
Here a kernel states its vectors itself: `vload(a, i)` is the vector `a[i:i + LANES]` (LANES = 8 float32 or 4
float64: one AVX register). The `*_rows` forms work on the first G rows of a 2-d array at once and return or
take a tuple of G vectors; G is the length of a `rows` tuple argument, so numba compiles a kernel once per G
and keeps the G accumulators in registers. No bounds checks: callers keep `i + LANES <= len(a)`.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

VECTOR_BYTES = 32


class Vec(types.Type):
    """A vector of `dtype` filling VECTOR_BYTES."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.lanes = VECTOR_BYTES * 8 // dtype.bitwidth
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _pointer(context, builder, array_type, array, index, row=None):
    """Address of array[index] (1-d) or array[row, index] (2-d, C-contiguous rows), as a vector pointer."""
    a = context.make_array(array_type)(context, builder, array)
    vector = context.get_value_type(Vec(array_type.dtype))
    data = a.data
    if row is not None:
        row_bytes = cgutils.unpack_tuple(builder, a.strides, array_type.ndim)[0]
        data = builder.bitcast(builder.gep(builder.bitcast(data, ir.IntType(8).as_pointer()),
                                           [builder.mul(row_bytes, row)]), data.type)
    return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())


def _load(context, builder, array_type, array, index, row=None):
    return builder.load(_pointer(context, builder, array_type, array, index, row),
                        align=array_type.dtype.bitwidth // 8)


def _fma(builder, a, b, c):
    """a * b + c with one rounding (llvm.fma)."""
    kind = "f32" if isinstance(a.type.element, ir.FloatType) else "f64"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(a.type, [a.type] * 3),
                                        f"llvm.fma.v{a.type.count}{kind}")
    return builder.call(fn, [a, b, c])


def _row_indices(context, n):
    return [context.get_constant(types.intp, r) for r in range(n)]


@intrinsic
def lanes(typingctx, array):
    """The number of elements of `array` in one vector (a compile-time constant)."""
    n = Vec(array.dtype).lanes

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, n)
    return types.intp(array), codegen


@intrinsic
def vload(typingctx, array, index):
    """array[index:index + lanes] of a 1-d contiguous array (unaligned)."""
    def codegen(context, builder, sig, args):
        return _load(context, builder, sig.args[0], *args)
    return Vec(array.dtype)(array, index), codegen


@intrinsic
def vload_rows(typingctx, array, rows, index):
    """(array[r, index:index + lanes] for r < len(rows)): a tuple of vectors."""
    out = types.UniTuple(Vec(array.dtype), rows.count)

    def codegen(context, builder, sig, args):
        values = [_load(context, builder, array, args[0], args[2], r) for r in _row_indices(context, rows.count)]
        return context.make_tuple(builder, out, values)
    return out(array, rows, index), codegen


@intrinsic
def vzeros_like(typingctx, vectors):
    """A tuple of zero vectors shaped like `vectors`."""
    def codegen(context, builder, sig, args):
        zero = ir.Constant(context.get_value_type(vectors.dtype), None)
        return context.make_tuple(builder, vectors, [zero] * vectors.count)
    return vectors(vectors), codegen


@intrinsic
def vaccumulate_rows(typingctx, acc, weight, array, index, centre):
    """acc_r + weight * (array[r, index:index + lanes] - centre_r) for every row r: one neighbour's terms."""
    def codegen(context, builder, sig, args):
        n = acc.count
        accs, ctrs = cgutils.unpack_tuple(builder, args[0], n), cgutils.unpack_tuple(builder, args[4], n)
        # acc - w * (c - v) equals acc + w * (v - c) to the bit (negation is exact); this order lets the
        # compiler fold the load into the subtraction, one instruction fewer per term
        minus_w = builder.fneg(args[1])
        out = [_fma(builder, minus_w, builder.fsub(c, _load(context, builder, array, args[2], args[3], r)), s)
               for r, c, s in zip(_row_indices(context, n), ctrs, accs)]
        return context.make_tuple(builder, acc, out)
    return acc(acc, weight, array, index, centre), codegen


@intrinsic
def vstore_step_rows(typingctx, array, index, centre, fwd, bwd, scale):
    """array[r, index:index + lanes] = centre_r + (fwd_r + bwd_r) * scale for every row r."""
    def codegen(context, builder, sig, args):
        n = centre.count
        ctrs, fs, bs = (cgutils.unpack_tuple(builder, t, n) for t in args[2:5])
        for r, c, f, b in zip(_row_indices(context, n), ctrs, fs, bs):
            value = _fma(builder, builder.fadd(f, b), args[5], c)
            builder.store(value, _pointer(context, builder, array, args[0], args[1], r),
                          align=array.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return types.none(array, index, centre, fwd, bwd, scale), codegen
