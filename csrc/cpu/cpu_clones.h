// AOT_CPU_CLONES compiles a function once per x86-64 level, AVX-512 (x86-64-v4), AVX2
// (x86-64-v3) and the baseline, and the loader picks the widest the CPU has (GCC's
// target_clones, on x86-64 ELF): one portable build, vector loops as wide as the hardware.
// Elsewhere it compiles the function once, for the build's target. The build passes
// -ffp-contract=off (C++ contracts a * b + c into an FMA by default, which only the AVX2 and
// AVX-512 clones have), so every clone performs the same IEEE operations in the same order and
// results do not depend on the CPU; it costs ~0.6 ns per logistic term.
#pragma once

// A build may define AOT_CPU_CLONES itself (empty, with -march=...: tests/test_cost_block_host.py
// compiles one variant at a time to compare them).
#if !defined(AOT_CPU_CLONES)
#if defined(__x86_64__) && defined(__ELF__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define AOT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AOT_CPU_CLONES
#endif
#endif
