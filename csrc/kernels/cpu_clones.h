// AOT_CPU_CLONES compiles a function once per x86-64 level, AVX-512 (x86-64-v4), AVX2
// (x86-64-v3) and the baseline, and the loader picks the widest the CPU has (GCC's
// target_clones, on x86-64 ELF): one portable build, vector loops as wide as the hardware.
// Elsewhere it compiles the function once, for the build's target. Every clone performs the
// same IEEE operations in the same order (no contraction into FMA under -std=c++17), so
// results do not depend on the CPU.
#pragma once

#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define AOT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AOT_CPU_CLONES
#endif
