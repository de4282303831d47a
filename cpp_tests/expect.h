// The C++ tests' one assertion, without a test framework: EXPECT(cond, printf-style message)
// counts checks and failures (the first 20 failures are printed), and finish() prints the counts
// and gives main()'s exit status (ctest reads it). Each test is its own executable, so the
// counters are per test.
#pragma once

#include <cstdint>
#include <cstdio>

namespace cnnaural_test {
inline int g_failures = 0;
inline int64_t g_checks = 0;

inline int finish() {
  std::printf("%lld checks, %d failures\n", static_cast<long long>(g_checks), g_failures);
  return g_failures == 0 ? 0 : 1;
}
}  // namespace cnnaural_test

#define EXPECT(cond, ...)                                                                       \
  do {                                                                                         \
    ++cnnaural_test::g_checks;                                                                 \
    if (!(cond)) {                                                                             \
      ++cnnaural_test::g_failures;                                                             \
      if (cnnaural_test::g_failures <= 20) {                                                   \
        std::fprintf(stderr, "%s:%d: EXPECT(%s) failed: ", __FILE__, __LINE__, #cond);          \
        std::fprintf(stderr, __VA_ARGS__);                                                     \
        std::fprintf(stderr, "\n");                                                            \
      }                                                                                        \
    }                                                                                          \
  } while (0)
