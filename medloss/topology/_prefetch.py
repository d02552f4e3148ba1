"""Software prefetch for the kernels' random accesses.

Filtration order makes every union-find ``find`` and every boundary lookup of a column reduction a random access
into tables that outgrow the caches at 128^3, but the cells processed next are known in advance: asking the CPU
to load their rows a few iterations ahead hides most of the memory latency (``llvm.prefetch``, a hint that never
faults and never changes a value).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def prefetch(typingctx, table, row):
    """Ask the CPU to start loading the cache line of ``table[row]`` (its first element for a 2D table)."""
    sig = types.void(table, row)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[1], signature.args[1], types.intp)]
        idx += [context.get_constant(types.intp, 0)] * (aryty.ndim - 1)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        # write intent (the find may compress the path), high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


# Table size from which prefetching the union-find rows pays: below it the table sits in the caches and the
# prefetch instructions only cost (measured: up to 20 % slower at 64^3 and 512^2); above it every random access
# waits on memory (128^3: the union-finds run 1.6-2.5x faster). The column reductions' boundary lookups pay from
# smaller tables (64^3: 20-25 % faster for real-valued rows).
PREFETCH_MIN_BYTES = 6 << 20


@njit(cache=True, nogil=True, inline="always")
def lookahead(table, distance, min_bytes=PREFETCH_MIN_BYTES):
    """``distance`` (iterations to prefetch ahead) if ``table`` holds at least ``min_bytes``, else 0."""
    return distance if table.size * table.itemsize >= min_bytes else 0
