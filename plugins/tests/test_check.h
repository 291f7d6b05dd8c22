/*
 * What the C++ tests of the host library share: a failure counter with a CHECK that reports and goes on
 * (up to 20 failures), and a seeded xorshift generator (same sequence on every platform, so a failing
 * case can be replayed by its seed). main() returns g_failures != 0.
 */
#ifndef SPECDEPLOY_TEST_CHECK_H
#define SPECDEPLOY_TEST_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int g_failures = 0;

#define CHECK(cond, ...)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            ++g_failures;                                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            if (g_failures > 20) exit(1);                                            \
        }                                                                            \
    } while (0)

struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    uint32_t u32() { return (uint32_t)(next() >> 11); }
    int32_t range(int32_t lo, int32_t hi) { return lo + (int32_t)(next() % (uint64_t)(hi - lo + 1)); }
    double uniform() { return (double)(next() >> 11) / 9007199254740992.0; }
    float normal() {
        const double u = uniform() + 1e-300, v = uniform();
        return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
};

#endif /* SPECDEPLOY_TEST_CHECK_H */
