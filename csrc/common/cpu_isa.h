// Run-time choice of the instruction set for the CPU kernels' hot loops, as ATen's DispatchStub
// does it: the extension is built for the platform's baseline (portable), and a kernel may add
// variants of its loops compiled for AVX2 + FMA with CNNAURAL_TARGET_AVX2, chosen once per
// process by cpu_isa(). A build with -march that already has AVX2 and FMA (CNNAURAL_CPU_ARCH=
// native on such a CPU) compiles no variants: its baseline is that arch.
//
// Keeping AVX2 instructions out of the baseline code (an AVX2 instruction must never run on a
// CPU without it):
//   - no translation unit is compiled with -mavx2: CNNAURAL_TARGET_AVX2 applies to the body of
//     the function it marks and to what the compiler inlines into it, nothing else. Out-of-line
//     functions (this project's, and the inline and template functions of ATen, c10 and std that
//     several translation units instantiate and the linker keeps one copy of) stay baseline code;
//   - a marked function has internal linkage (anonymous namespace), so nothing outside its
//     translation unit can bind to it, and it is called only where cpu_isa() says kAvx2Fma;
//   - a variant is CNNAURAL_FLATTEN: every call in it is inlined, recursively (the lambdas of the
//     hot loops too), so it runs its own AVX2 copies of them; a call left (a library function,
//     a function defined elsewhere) goes to the baseline copy: slower there, never wrong.
// scripts/check_cpu_isa.sh checks a built library: VEX-encoded instructions only in functions
// named *_avx2 (ctest runs it on the CMake library).
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define CNNAURAL_ALWAYS_INLINE inline __attribute__((always_inline))
#define CNNAURAL_FLATTEN __attribute__((flatten))  // inline every call in the body, recursively
#else
#define CNNAURAL_ALWAYS_INLINE inline
#define CNNAURAL_FLATTEN
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !(defined(__AVX2__) && defined(__FMA__))
#define CNNAURAL_AVX2_DISPATCH 1
#define CNNAURAL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define CNNAURAL_AVX2_DISPATCH 0
#endif

namespace cnnaural {

enum class CpuIsa {
  kDefault,  // the build's own instruction set (baseline, or its -march)
  kAvx2Fma,  // the CNNAURAL_TARGET_AVX2 variants
};

// kAvx2Fma where variants are compiled in and the CPU (and OS) has AVX2 and FMA, unless
// CNNAURAL_CPU_ISA=default asks for the default loops (to test or compare them). Read once.
CpuIsa cpu_isa();

// "avx2+fma", or "default" (with the build's -march in brackets when it was given one).
const char* cpu_isa_name();

}  // namespace cnnaural
