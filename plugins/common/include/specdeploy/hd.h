/*
 * SD_HD marks the per-element math that is compiled twice: by nvcc for the device (kernels) and by a
 * plain C++ compiler for the host library used in CI. It expands to `__host__ __device__` under nvcc
 * and to nothing otherwise; write `SD_HD inline` on every such function.
 *
 * Bit-exactness rule (docs/format.md): every floating-point operation whose result decides which
 * coefficients are kept goes through sd_fmul / sd_fadd / sd_fma (complex_math.h). On the device they
 * are the __fmul_rn / __fadd_rn / __fmaf_rn intrinsics, which nvcc never contracts or reorders; on
 * the host they are plain operations (the host library is built with -ffp-contract=off) and fmaf.
 * Therefore the count pass and the write pass of a kernel compute the same bits, and the host and
 * the device compute the same bits for the same inputs (except for tanh, which is never used to
 * decide kept-ness).
 */
#ifndef SPECDEPLOY_HD_H
#define SPECDEPLOY_HD_H

#include <stdint.h>

#if defined(__CUDACC__)
#define SD_HD __host__ __device__
#define SD_UNROLL _Pragma("unroll")
#else
#define SD_HD
#define SD_UNROLL
#endif

#endif /* SPECDEPLOY_HD_H */
