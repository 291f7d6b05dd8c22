/* Device-side companion of packed.h: the same SD_HD functions plus warp-level helpers used by the
 * kernels (one warp of 32 consecutive frequencies = one mask word). Include only from .cu files. */
#ifndef SPECDEPLOY_PACKED_CUH
#define SPECDEPLOY_PACKED_CUH

#include <cuda_runtime.h>

#include "specdeploy/packed.h"

/* Lanes below this one. */
__device__ __forceinline__ uint32_t sd_lanemask_lt() {
    uint32_t m;
    asm("mov.u32 %0, %%lanemask_lt;" : "=r"(m));
    return m;
}

#endif /* SPECDEPLOY_PACKED_CUH */
