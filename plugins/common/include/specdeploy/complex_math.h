/* Complex fp32 arithmetic and DFT twiddles shared by host and device (see hd.h for the rules). */
#ifndef SPECDEPLOY_COMPLEX_MATH_H
#define SPECDEPLOY_COMPLEX_MATH_H

#include <math.h>
#include <string.h>

#include "specdeploy/hd.h"

struct sd_cf {
    float re, im;
};

SD_HD inline sd_cf sd_cf_make(float re, float im) {
    sd_cf r;
    r.re = re;
    r.im = im;
    return r;
}

SD_HD inline sd_cf sd_cf_zero() { return sd_cf_make(0.0f, 0.0f); }

SD_HD inline float sd_fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

SD_HD inline float sd_fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

/* a * b + c with one rounding on host and device. */
SD_HD inline float sd_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return fmaf(a, b, c);
#endif
}

/* |v|^2 = re*re + im*im: two products and one sum, each rounded to fp32 (never fused). */
SD_HD inline float sd_abs2(sd_cf v) { return sd_fadd(sd_fmul(v.re, v.re), sd_fmul(v.im, v.im)); }

/* acc + a * b */
SD_HD inline sd_cf sd_cmac(sd_cf acc, sd_cf a, sd_cf b) {
    sd_cf r;
    r.re = sd_fma(a.re, b.re, sd_fma(-a.im, b.im, acc.re));
    r.im = sd_fma(a.re, b.im, sd_fma(a.im, b.re, acc.im));
    return r;
}

/* acc + a * conj(b) */
SD_HD inline sd_cf sd_cmac_conj(sd_cf acc, sd_cf a, sd_cf b) {
    sd_cf r;
    r.re = sd_fma(a.re, b.re, sd_fma(a.im, b.im, acc.re));
    r.im = sd_fma(a.im, b.re, sd_fma(-a.re, b.im, acc.im));
    return r;
}

/* acc + a * b for real a */
SD_HD inline sd_cf sd_rmac(sd_cf acc, float a, sd_cf b) {
    sd_cf r;
    r.re = sd_fma(a, b.re, acc.re);
    r.im = sd_fma(a, b.im, acc.im);
    return r;
}

SD_HD inline sd_cf sd_cscale(sd_cf v, float s) { return sd_cf_make(sd_fmul(v.re, s), sd_fmul(v.im, s)); }

/* sin(pi x), cos(pi x) in double. Device: sincospi. Host: quarter-period reduction, so that the
 * quarter points are exact (as they are for sincospi). */
SD_HD inline void sd_sincospi(double x, double* s, double* c) {
#if defined(__CUDA_ARCH__)
    sincospi(x, s, c);
#else
    x = fmod(x, 2.0);
    if (x > 1.0) x -= 2.0;
    if (x < -1.0) x += 2.0;
    const double n = nearbyint(2.0 * x); /* -2 .. 2 */
    const double r = x - 0.5 * n;        /* [-0.25, 0.25] */
    const double pi = 3.14159265358979323846;
    const double sr = (r == 0.0) ? 0.0 : sin(pi * r);
    const double cr = (r == 0.0) ? 1.0 : cos(pi * r);
    switch (((int)n) & 3) {
        case 0: *s = sr; *c = cr; break;
        case 1: *s = cr; *c = -sr; break;
        case 2: *s = -sr; *c = -cr; break;
        default: *s = -cr; *c = sr; break;
    }
#endif
}

/* e^{-2 pi i j / N} rounded to fp32, for 0 <= j < N. Tables of these are built once per launch (in
 * the workspace) by the same function on host and device. */
SD_HD inline sd_cf sd_twiddle(int64_t j, int64_t N) {
    double s, c;
    sd_sincospi(2.0 * (double)j / (double)N, &s, &c);
    return sd_cf_make((float)c, (float)(-s));
}

#endif /* SPECDEPLOY_COMPLEX_MATH_H */
